-- Record delivery events (a callback request, or one lookup's answers) in one step: each is
-- applied to its message's status, or parked while the message's jobId is not known yet.
-- Prepended with status.lua.
-- ARGV[1]  key names (JSON; see status.lua)
-- ARGV[2]  ledger ttl (s): how long a job's status history is kept
-- ARGV[3]  park time (ms): how long an event of an unknown message waits for its jobId
-- ARGV[4]  JSON array of events (see status.lua)
-- Returns per event {result, ms since the message was accepted (0 when parked), the message's
-- channel ('' when parked)}; result is one of parked, duplicate, stale, changed, final.
local N = cjson.decode(ARGV[1])
local now = now_ms()
local results = {}
for i, ev in ipairs(cjson.decode(ARGV[4])) do
  local m = redis.call('HMGET', N.message .. ev[1], 'accepted', 'channel')
  if m[1] then
    results[i] = {apply(N, ev, ARGV[2]), now - tonumber(m[1]), m[2]}
  else
    results[i] = {park(N, ev, now + tonumber(ARGV[3])), 0, ''}
  end
end
return results
