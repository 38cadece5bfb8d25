-- Give back the claims of a batch that could not finish, and end its lease so that its
-- entries are taken over at once (a job that keeps failing ends at MAX_DELIVERIES).
-- KEYS[1]  the batch's lease key
-- ARGV[1]  ledger key prefix
-- ARGV[2]  the batch id
-- ARGV[3]  JSON array of jobIds
for _, job in ipairs(cjson.decode(ARGV[3])) do
  local key = ARGV[1] .. job
  if redis.call('GET', key) == 'inflight:' .. ARGV[2] then redis.call('DEL', key) end
end
redis.call('DEL', KEYS[1])
return 0
