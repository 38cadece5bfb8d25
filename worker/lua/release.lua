-- Give back the claims of a batch that could not finish, and end its lease so that its
-- entries are taken over at once (a job that keeps failing ends at MAX_DELIVERIES).
-- KEYS[1]  the batch's lease key
-- ARGV[1]  ledger key prefix
-- ARGV[2]  the batch id
-- ARGV[3...] the jobIds
-- Keys per MGET or DEL: well within Lua's stack (unpack) limit.
local CHUNK = 500
local claim = 'inflight:' .. ARGV[2]
local keys = {}
for i = 3, #ARGV do keys[#keys + 1] = ARGV[1] .. ARGV[i] end
for lo = 1, #keys, CHUNK do
  local hi = math.min(lo + CHUNK - 1, #keys)
  local mine = {}
  for i, state in ipairs(redis.call('MGET', unpack(keys, lo, hi))) do
    if state == claim then mine[#mine + 1] = keys[lo + i - 1] end
  end
  if #mine > 0 then redis.call('DEL', unpack(mine)) end
end
redis.call('DEL', KEYS[1])
return 0
