-- Renew leases that still hold the expected value. A lease that lapsed because Redis
-- restarted, or was out of reach for longer than a lease, is set again if its holder still
-- holds its entries: nobody took them over, and taking them over is what a lapse allows.
-- Otherwise a lapsed lease is never revived.
-- KEYS     lease keys
-- ARGV[1]  lease (ms)
-- ARGV[2]  consumer group
-- then per key, three values: the value it must hold ('reader', 'queued', 'running'), the
--          job stream its holder's entries are in ('' for a holder never revived), and the
--          holder's name
-- Returns 1 per lease kept, 0 per lease gone or moved on (a queued batch now running).
local out = {}
for i, key in ipairs(KEYS) do
  local value, stream, holder = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  local current = redis.call('GET', key)
  out[i] = 0
  if current == value then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  elseif not current and stream ~= '' then
    if redis.call('EXISTS', stream) == 1
        and #redis.call('XPENDING', stream, ARGV[2], '-', '+', 1, holder) > 0 then
      redis.call('SET', key, value, 'PX', ARGV[1])
      out[i] = 1
    end
  end
end
return out
