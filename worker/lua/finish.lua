-- Finish a batch in one step: publish each outcome with its ledger state, acknowledge and
-- delete each entry whose job is final, then end the batch; what it leaves pending waits
-- under a 'w-' holder. An entry is acknowledged only when its job's outcome is in Redis.
-- KEYS[1]  the job stream
-- KEYS[2]  the batch's lease key
-- KEYS[3]  the results stream
-- KEYS[4]  the dead-letter stream
-- ARGV[1]  consumer group
-- ARGV[2]  the batch id (its consumer name)
-- ARGV[3]  ledger key prefix
-- ARGV[4]  lease key prefix
-- ARGV[5]  ledger ttl (s)
-- ARGV[6]  wait (ms): how long entries left pending wait before they are taken over
-- ARGV[7]  the waiting holder's name ('w-...')
-- ARGV[8]  key names of delivery tracking (JSON; see tasks/tracking/lua/status.lua, which is
--          prepended to this script)
-- ARGV[9]  the channel, '' when its messages have no delivery status (conversions)
-- ARGV[10] first status lookup (ms after acceptance; STATUS_POLL_AFTER_S)
-- ARGV[11...] the rows, five items each: entry id (as XPENDING gives it), jobId, final
--          state, outcome JSON, job JSON; the last three are '' for an entry whose jobId
--          finished before (only acknowledged); the state is 'returned' for a job given
--          back unsent (its claim is released); the job JSON is '' unless the job goes to
--          the dead letters. A row with jobId '' is an entry deleted meanwhile: only
--          acknowledged. Rows are taken in order, so a row sees the ledger states the rows
--          before it wrote.
-- (Rows are plain arguments, which reach Lua without a JSON decode, and the reads,
-- acknowledgements and deletions take one command per 500 rows: from Lua, each call costs
-- about as much again as a small command's own work.)
-- An outcome is published when the ledger holds this batch's claim, no claim (Redis lost
-- it: the job was sent and must not end without an outcome) or the claim of a dead batch.
-- It is not when the job is final already or another live batch holds it.
-- Each published outcome's entry id starts its job's history (`track`); an accepted message's
-- uuid is mapped to its jobId and scheduled for a status lookup, and callbacks parked under it
-- (they came before this step) are applied.
-- Returns {published, final already, held by another live batch, entries acknowledged,
-- parked callbacks applied, {the final status each of them reached, if any}}.
-- Where the rows start, and their width.
local FIRST, WIDTH = 11, 5
-- Keys or ids per multi-key command: well within Lua's stack (unpack) limit.
local CHUNK = 500
-- More entries than a batch ever holds (BATCH_SIZE is at most 1,000).
local HELD_MAX = 100000
local claim = 'inflight:' .. ARGV[2]
local published, already, taken, unparked, finals = 0, 0, 0, 0, {}
local N = cjson.decode(ARGV[8])
local now = now_ms()

-- Calls the command `head` (its name and first arguments) on `items`, CHUNK at a time, each
-- call ended by `tail` if given; returns the replies joined (for a command that answers one
-- item per item given).
local function chunked(head, items, tail)
  local out = {}
  for lo = 1, #items, CHUNK do
    local args = {unpack(head)}
    for i = lo, math.min(lo + CHUNK - 1, #items) do args[#args + 1] = items[i] end
    if tail then args[#args + 1] = tail end
    local reply = redis.call(unpack(args))
    if type(reply) == 'table' then
      for _, r in ipairs(reply) do out[#out + 1] = r end
    end
  end
  return out
end

-- The entries this batch holds, in the stream's order; an entry leaves the set when it is
-- acknowledged (nothing else changes this consumer's entries within the step).
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', HELD_MAX, ARGV[2])
local held = {}
for _, p in ipairs(pending) do held[p[1]] = true end

-- Every row's ledger state, read at once: the rows then read and write this table, as they
-- would read and write the keys.
local keys = {}
for i = FIRST, #ARGV, WIDTH do keys[#keys + 1] = ARGV[3] .. ARGV[i + 1] end
local states = {}
for i, state in ipairs(chunked({'MGET'}, keys)) do states[keys[i]] = state end

-- Callbacks parked under an accepted message (they came before this step) are applied when
-- its row is, after its lookup is scheduled (a callback may bring the final status, which
-- cancels it). The messages with parked callbacks are found before the rows by halving the
-- set of accepted uuids while any of its lists exists: one EXISTS for a batch with none.
local parked = {}
if ARGV[9] ~= '' then
  local uuids, lists = {}, {}
  for i = FIRST + 2, #ARGV, WIDTH do
    if string.sub(ARGV[i], 1, 9) == 'accepted:' then
      uuids[#uuids + 1] = string.sub(ARGV[i], 10)
      lists[#lists + 1] = N.parked .. uuids[#uuids]
    end
  end
  local function find(lo, hi)
    local found = redis.call('EXISTS', unpack(lists, lo, hi))
    if found == hi - lo + 1 then
      for j = lo, hi do parked[uuids[j]] = true end
    elseif found > 0 then
      local mid = math.floor((lo + hi) / 2)
      find(lo, mid)
      find(mid + 1, hi)
    end
  end
  for lo = 1, #lists, CHUNK do find(lo, math.min(lo + CHUNK - 1, #lists)) end
end

local function unpark(uuid)
  local list = N.parked .. uuid
  local events = redis.call('LRANGE', list, 0, -1)
  if #events > 0 then
    for _, raw in ipairs(events) do
      local ev = cjson.decode(raw)
      if apply(N, ev, ARGV[5]) == 'final' then
        finals[#finals + 1] = ev[3]
      end
    end
    redis.call('DEL', list)
    redis.call('ZREM', N.parkedIndex, uuid)
    unparked = unparked + #events
  end
end

-- The acceptance time and the first lookup's, written once as Redis writes a Lua number.
local accepted_at = string.format('%d', now)
local lookup_at = string.format('%d', now + tonumber(ARGV[10]))
local acks, scheduled = {}, {}
local row = 0
for i = FIRST, #ARGV, WIDTH do
  row = row + 1
  local entry, job, final_state = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = keys[row]
  local final, mine = false, false
  if job == '' then
    final = true
  else
    local state = states[key]
    if not state or state == claim then
      mine = true
    elseif string.sub(state, 1, 9) == 'inflight:' then
      mine = redis.call('EXISTS', ARGV[4] .. string.sub(state, 10)) == 0
      if not mine then taken = taken + 1 end
    else
      final = true
    end
  end
  if final_state == 'returned' then
    if states[key] == claim then
      redis.call('DEL', key)
      states[key] = false
    end
  elseif mine and final_state ~= '' then
    local outcome, track = ARGV[i + 3], N.track .. job
    redis.call('SET', key, final_state, 'EX', ARGV[5])
    states[key] = final_state
    local id = redis.call('XADD', KEYS[3], '*', 'outcome', outcome)
    if ARGV[i + 4] ~= '' then
      redis.call('XADD', KEYS[4], '*', 'job', ARGV[i + 4], 'outcome', outcome)
    end
    redis.call('RPUSH', track, 'r' .. id)
    redis.call('EXPIRE', track, ARGV[5])
    if ARGV[9] ~= '' and string.sub(final_state, 1, 9) == 'accepted:' then
      local uuid = string.sub(final_state, 10)
      local message = N.message .. uuid
      redis.call('HSET', message, 'job', job, 'channel', ARGV[9], 'accepted', accepted_at)
      redis.call('EXPIRE', message, ARGV[5])
      if parked[uuid] then
        redis.call('ZADD', N.tracking, lookup_at, uuid)
        unpark(uuid)
      else
        scheduled[#scheduled + 1] = lookup_at
        scheduled[#scheduled + 1] = uuid
      end
    end
    published = published + 1
    final = true
  elseif final and final_state ~= '' then
    already = already + 1
  end
  if final and held[entry] then
    acks[#acks + 1] = entry
    held[entry] = nil
  end
end

-- The other lookups, scheduled at once (in pairs: score, uuid; chunks stay even).
chunked({'ZADD', N.tracking}, scheduled)
-- (DELCONSUMER, below, would drop these from the group's pending entries too: the
-- acknowledgement is said, not left to it.)
chunked({'XACK', KEYS[1], ARGV[1]}, acks)
chunked({'XDEL', KEYS[1]}, acks)

local left = {}
for _, p in ipairs(pending) do
  if held[p[1]] then left[#left + 1] = p[1] end
end
if #left > 0 then
  chunked({'XCLAIM', KEYS[1], ARGV[1], ARGV[7], '0'}, left, 'JUSTID')
  redis.call('SET', ARGV[4] .. ARGV[7], 'waiting', 'PX', ARGV[6])
end
redis.call('DEL', KEYS[2])
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return {published, already, taken, #acks, unparked, finals}
