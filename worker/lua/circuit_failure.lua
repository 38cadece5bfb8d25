-- Count one failed API request (5xx, 429, network error, or a refused key) for every pod; open
-- the circuit when they keep failing, and wait longer after each failed probe.
-- KEYS[1]  the circuit hash {state, failures, cooldown, until, reason}
-- ARGV[1]  consecutive failures that open it
-- ARGV[2]  first cooldown (ms)
-- ARGV[3]  longest cooldown (ms)
-- ARGV[4]  '1' to open at once (401/403: no request can succeed until the key is fixed)
-- ARGV[5]  the reason, for operators (never the token)
-- Returns {state, ms until a probe may go, 1 if this call opened it}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  local probe_at = tonumber(redis.call('HGET', KEYS[1], 'until'))
  if now >= probe_at then
    -- a probe failed after the cooldown: wait twice as long before the next one
    local cooldown = math.min(tonumber(redis.call('HGET', KEYS[1], 'cooldown')) * 2,
                              tonumber(ARGV[3]))
    probe_at = now + cooldown
    redis.call('HSET', KEYS[1], 'cooldown', cooldown, 'until', probe_at, 'reason', ARGV[5])
  end
  return {'open', probe_at - now, 0}
end
if ARGV[4] == '1' or failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened', now, 'cooldown', ARGV[2],
             'until', now + tonumber(ARGV[2]), 'reason', ARGV[5])
  return {'open', tonumber(ARGV[2]), 1}
end
return {'closed', 0, 0}
