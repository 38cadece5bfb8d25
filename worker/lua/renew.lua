-- Renew leases that still hold the expected value. A lease that lapsed because Redis
-- restarted, or was out of reach for longer than a lease, is set again if its holder still
-- holds its entries: nobody took them over, and taking them over is what a lapse allows.
-- Otherwise a lapsed lease is never revived.
-- KEYS     lease keys
-- ARGV[1]  consumer group
-- then per key, four values: the value it must hold ('reader', 'queued', 'running'), the
--          job stream its holder's entries are in ('' for a holder never revived), the
--          holder's name, and its lease (ms)
-- Returns 1 per lease kept, 0 per lease gone or moved on (a queued batch now running).
local out = {}
for i, key in ipairs(KEYS) do
  local value, stream = ARGV[4 * i - 2], ARGV[4 * i - 1]
  local holder, lease = ARGV[4 * i], ARGV[4 * i + 1]
  local current = redis.call('GET', key)
  out[i] = 0
  if current == value then
    redis.call('PEXPIRE', key, lease)
    out[i] = 1
  elseif not current and stream ~= '' then
    if redis.call('EXISTS', stream) == 1
        and #redis.call('XPENDING', stream, ARGV[1], '-', '+', 1, holder) > 0 then
      redis.call('SET', key, value, 'PX', lease)
      out[i] = 1
    end
  end
end
return out
