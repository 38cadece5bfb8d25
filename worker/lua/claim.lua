-- Claim jobIds for a batch about to send them: a jobId is sent by one batch at a time, and
-- once it has an outcome it is never sent again (a failed one only after a replay).
-- ARGV[1]  ledger key prefix ({prefix}:ledger:)
-- ARGV[2]  lease key prefix ({prefix}:lease:)
-- ARGV[3]  the batch id
-- ARGV[4]  ledger ttl (s)
-- ARGV[5...] the jobIds
-- (Key names are built here from the prefixes: thousands of KEYS cost more than the batch;
-- standalone and replicated Redis allow it, Redis Cluster would not.)
-- Returns per jobId: 'claimed', 'busy' (another live batch holds it) or 'done' (finished).
-- Where the jobIds start.
local FIRST = 5
-- Keys per MGET: well within Lua's stack (unpack) limit.
local CHUNK = 500
local claim = 'inflight:' .. ARGV[3]
-- Every state read at once; a jobId given twice sees the claim the first one made.
local keys, states = {}, {}
for i = FIRST, #ARGV do keys[#keys + 1] = ARGV[1] .. ARGV[i] end
for lo = 1, #keys, CHUNK do
  local hi = math.min(lo + CHUNK - 1, #keys)
  local got = redis.call('MGET', unpack(keys, lo, hi))
  for i = lo, hi do states[keys[i]] = got[i - lo + 1] end
end
local out = {}
for i, key in ipairs(keys) do
  local state = states[key]
  if state and state ~= claim then
    if string.sub(state, 1, 9) ~= 'inflight:' then
      out[i] = 'done'
    elseif redis.call('EXISTS', ARGV[2] .. string.sub(state, 10)) == 1 then
      out[i] = 'busy'
    end
  end
  if not out[i] then
    redis.call('SET', key, claim, 'EX', ARGV[4])
    states[key] = claim
    out[i] = 'claimed'
  end
end
return out
