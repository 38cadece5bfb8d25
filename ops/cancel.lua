-- Cancel queued jobs of one channel. The ledger decides, as it does between batches: a job no
-- live batch holds ends `cancelled` here, its outcome published once, and its entry is
-- acknowledged and deleted, so no batch sends it (a batch that read it already finds it gone,
-- or finds its jobId final and only acknowledges it). A job a live batch holds is being sent:
-- it is left alone, and its outcome will come from that batch.
-- KEYS[1]  the job stream
-- KEYS[2]  the results stream
-- ARGV[1]  consumer group
-- ARGV[2]  ledger key prefix
-- ARGV[3]  lease key prefix
-- ARGV[4]  ledger ttl (s)
-- ARGV[5]  track key prefix (the job's history, see tasks/keys.py)
-- ARGV[6]  JSON array of rows {entry id, jobId, outcome JSON}
-- Returns per row: 'now' (cancelled now, its outcome published), 'sending' (a live batch holds
-- it), 'gone' (the entry is no longer in the stream and its jobId has no state), or the
-- jobId's final state ('accepted:{uuid}', 'rejected', 'failed', 'expired', 'cancelled').
local out = {}

local function drop(entry)
  redis.call('XACK', KEYS[1], ARGV[1], entry)
  redis.call('XDEL', KEYS[1], entry)
end

for i, row in ipairs(cjson.decode(ARGV[6])) do
  local entry, key = row[1], ARGV[2] .. row[2]
  local state = redis.call('GET', key)
  local free = not state
  if state and string.sub(state, 1, 9) == 'inflight:' then
    free = redis.call('EXISTS', ARGV[3] .. string.sub(state, 10)) == 0
  end
  if free and #redis.call('XRANGE', KEYS[1], entry, entry) == 0 then
    out[i] = 'gone'
  elseif free then
    redis.call('SET', key, 'cancelled', 'EX', ARGV[4])
    local id = redis.call('XADD', KEYS[2], '*', 'outcome', row[3])
    redis.call('RPUSH', ARGV[5] .. row[2], 'r' .. id)
    redis.call('EXPIRE', ARGV[5] .. row[2], ARGV[4])
    drop(entry)
    out[i] = 'now'
  elseif string.sub(state, 1, 9) == 'inflight:' then
    out[i] = 'sending'
  else
    if state == 'cancelled' then drop(entry) end  -- a second entry of a cancelled jobId
    out[i] = state
  end
end
return out
