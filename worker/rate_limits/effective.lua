-- A fragment prepended to the scripts that read a channel's rate under ADAPTIVE_RATE.
-- The state (a hash: rate, cap, at) is written on a 429 (throttled.lua): `rate` is what the
-- channel may send right after it (units/s), `cap` what it may climb back to at first, `at`
-- when (ms). From then on the rate climbs by `increase` x the reference (the configured
-- limit, or the learnt cap without one) a second, and the cap itself creeps up by `creep` of
-- itself a second, so a channel without a limit probes above what it learnt only slowly;
-- nothing ever goes above a configured limit. No state: the configured limit (0: none).
local function effective_rate(key, configured, increase, creep, now)
  local s = redis.call('HMGET', key, 'rate', 'cap', 'at')
  if not s[1] then
    return configured
  end
  local rate, cap, at = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  local dt = math.max(0, now - at) / 1000
  local reference = cap
  if configured > 0 then
    reference = configured
  end
  local ceiling = cap * (1 + creep * dt)
  if configured > 0 and ceiling > configured then
    ceiling = configured
  end
  return math.min(ceiling, rate + increase * reference * dt)
end
