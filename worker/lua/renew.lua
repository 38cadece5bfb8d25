-- Renew leases that still hold the expected value; a lapsed lease is never revived.
-- KEYS     lease keys
-- ARGV[1]  lease (ms)
-- ARGV[2..] the value each key must hold (e.g. 'reader', 'queued')
-- Returns 1 per key renewed, 0 per key gone or moved on (a queued batch now running).
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
