-- Claim jobIds for a batch about to send them: a jobId is sent by one batch at a time, and
-- once it has an outcome it is never sent again (a failed one only after a replay).
-- ARGV[1]  ledger key prefix ({prefix}:ledger:)
-- ARGV[2]  lease key prefix ({prefix}:lease:)
-- ARGV[3]  the batch id
-- ARGV[4]  ledger ttl (s)
-- ARGV[5]  JSON array of jobIds
-- (Key names are built here from the prefixes: thousands of KEYS cost more than the batch;
-- standalone and replicated Redis allow it, Redis Cluster would not.)
-- Returns per jobId: 'claimed', 'busy' (another live batch holds it) or 'done' (finished).
local claim = 'inflight:' .. ARGV[3]
local out = {}
for i, job in ipairs(cjson.decode(ARGV[5])) do
  local key = ARGV[1] .. job
  local state = redis.call('GET', key)
  if not state or state == claim then
    redis.call('SET', key, claim, 'EX', ARGV[4])
    out[i] = 'claimed'
  elseif string.sub(state, 1, 9) == 'inflight:' then
    if redis.call('EXISTS', ARGV[2] .. string.sub(state, 10)) == 1 then
      out[i] = 'busy'
    else
      redis.call('SET', key, claim, 'EX', ARGV[4])
      out[i] = 'claimed'
    end
  else
    out[i] = 'done'
  end
end
return out
