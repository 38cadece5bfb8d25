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
-- ARGV[8]  JSON array of rows {entry id, jobId, final state, outcome JSON, job JSON}; the
--          last three are '' for an entry whose jobId finished before (only acknowledged);
--          the state is 'returned' for a job given back unsent (its claim is released);
--          the job JSON is '' unless the job goes to the dead letters. A row with jobId ''
--          is an entry deleted meanwhile: only acknowledged. Rows are taken in order, so an
--          acknowledgement comes after the outcome of its jobId.
-- ARGV[9]  key names of delivery tracking (JSON; see tasks/tracking/lua/status.lua, which is
--          prepended to this script)
-- ARGV[10] the channel, '' when its messages have no delivery status (conversions)
-- ARGV[11] first status lookup (ms after acceptance; STATUS_POLL_AFTER_S)
-- An outcome is published when the ledger holds this batch's claim, no claim (Redis lost
-- it: the job was sent and must not end without an outcome) or the claim of a dead batch.
-- It is not when the job is final already or another live batch holds it.
-- Each published outcome's entry id starts its job's history (`track`); an accepted message's
-- uuid is mapped to its jobId and scheduled for a status lookup, and callbacks parked under it
-- (they came before this step) are applied.
-- Returns {published, final already, held by another live batch, entries acknowledged,
-- parked callbacks applied, {the final status each of them reached, if any}}.
local claim = 'inflight:' .. ARGV[2]
local published, already, taken, acked, unparked, finals = 0, 0, 0, 0, 0, {}
local N = cjson.decode(ARGV[9])
local now = now_ms()

local function accepted(uuid, job_id)
  local key = N.message .. uuid
  redis.call('HSET', key, 'job', job_id, 'channel', ARGV[10], 'accepted', now)
  redis.call('EXPIRE', key, ARGV[5])
  redis.call('ZADD', N.tracking, now + tonumber(ARGV[11]), uuid)
  local parked = redis.call('LRANGE', N.parked .. uuid, 0, -1)
  if #parked > 0 then
    for _, raw in ipairs(parked) do
      local ev = cjson.decode(raw)
      if apply(N, ev, ARGV[5]) == 'final' then
        finals[#finals + 1] = ev[3]
      end
    end
    redis.call('DEL', N.parked .. uuid)
    redis.call('ZREM', N.parkedIndex, uuid)
    unparked = unparked + #parked
  end
end

for _, row in ipairs(cjson.decode(ARGV[8])) do
  local entry, key = row[1], ARGV[3] .. row[2]
  local final, mine = false, false
  if row[2] == '' then
    final = true
  else
    local state = redis.call('GET', key)
    if not state or state == claim then
      mine = true
    elseif string.sub(state, 1, 9) == 'inflight:' then
      mine = redis.call('EXISTS', ARGV[4] .. string.sub(state, 10)) == 0
      if not mine then taken = taken + 1 end
    else
      final = true
    end
  end
  if row[3] == 'returned' then
    if redis.call('GET', key) == claim then redis.call('DEL', key) end
  elseif mine and row[3] ~= '' then
    redis.call('SET', key, row[3], 'EX', ARGV[5])
    local id = redis.call('XADD', KEYS[3], '*', 'outcome', row[4])
    if row[5] ~= '' then
      redis.call('XADD', KEYS[4], '*', 'job', row[5], 'outcome', row[4])
    end
    redis.call('RPUSH', N.track .. row[2], 'r' .. id)
    redis.call('EXPIRE', N.track .. row[2], ARGV[5])
    if ARGV[10] ~= '' and string.sub(row[3], 1, 9) == 'accepted:' then
      accepted(string.sub(row[3], 10), row[2])
    end
    published = published + 1
    final = true
  elseif final and row[3] ~= '' then
    already = already + 1
  end
  if final then
    local holder = redis.call('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)[1]
    if holder and holder[2] == ARGV[2] then
      redis.call('XACK', KEYS[1], ARGV[1], entry)
      redis.call('XDEL', KEYS[1], entry)
      acked = acked + 1
    end
  end
end
local left = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 100000, ARGV[2])
if #left > 0 then
  local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[7], '0'}
  for _, p in ipairs(left) do args[#args + 1] = p[1] end
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
  redis.call('SET', ARGV[4] .. ARGV[7], 'waiting', 'PX', ARGV[6])
end
redis.call('DEL', KEYS[2])
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return {published, already, taken, acked, unparked, finals}
