-- A 429 on an endpoint, for every pod (effective.lua first): pause the endpoint until its
-- Retry-After (or an exponential backoff by the 429s in a row), and with ADAPTIVE_RATE cut
-- the channel's rate (multiplicative decrease; effective.lua climbs it back).
-- KEYS[1]  the endpoint's pause (hash: until ms, strikes = 429s since it was last forgotten)
-- KEYS[2]  the channel's adaptive state (hash: rate, cap, at, hit = ms of the last cut)
-- KEYS[3]  the channel's accepted units (hash: sec, cur, prev; accepted.lua)
-- ARGV[1]  Retry-After (ms; -1: none)
-- ARGV[2]  first backoff (ms), ARGV[3] longest backoff (ms)
-- ARGV[4]  strikes (and the pause) forgotten this long after the pause ends (ms)
-- ARGV[5]  '1' with ADAPTIVE_RATE
-- ARGV[6]  the channel's configured limit (units/s; 0: none)
-- ARGV[7]  increase, ARGV[8] creep (effective.lua)
-- ARGV[9]  decrease (the rate is multiplied by it), ARGV[10] cap margin (the cap is the
--          rate at the 429 times it)
-- ARGV[11] 429s within this long of the last cut are the same event: no second cut (ms)
-- ARGV[12] the adaptive state is forgotten this long after the last cut (ms)
-- ARGV[13] the lowest rate a cut goes to (units/s)
-- Returns {ms the endpoint is paused from now, the channel's new rate as text ('' if not cut)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local strikes = redis.call('HINCRBY', KEYS[1], 'strikes', 1)
local pause = tonumber(ARGV[1])
if pause < 0 then
  pause = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (strikes - 1))
end
local untill = math.max(now + pause, tonumber(redis.call('HGET', KEYS[1], 'until') or '0'))
redis.call('HSET', KEYS[1], 'until', string.format('%.3f', untill))
redis.call('PEXPIRE', KEYS[1], math.ceil(untill - now) + tonumber(ARGV[4]))
local cut = ''
if ARGV[5] == '1' then
  local hit = tonumber(redis.call('HGET', KEYS[2], 'hit') or '0')
  if now - hit >= tonumber(ARGV[11]) then
    local configured = tonumber(ARGV[6])
    local current = effective_rate(KEYS[2], configured, tonumber(ARGV[7]), tonumber(ARGV[8]), now)
    -- What the API took over the last second and this one so far: the rate it really allows.
    local a = redis.call('HMGET', KEYS[3], 'sec', 'cur', 'prev')
    local sec, frac = math.floor(now / 1000), (now % 1000) / 1000
    local measured = 0
    if tonumber(a[1] or '0') == sec then
      measured = (tonumber(a[2]) + tonumber(a[3])) / (1 + frac)
    elseif tonumber(a[1] or '0') == sec - 1 then
      measured = tonumber(a[2]) / (1 + frac)
    end
    if measured > 0 and (current <= 0 or measured < current) then
      current = measured
    end
    if current > 0 then
      local rate = math.max(tonumber(ARGV[13]), current * tonumber(ARGV[9]))
      local cap = math.max(rate, current * tonumber(ARGV[10]))
      redis.call('HSET', KEYS[2], 'rate', string.format('%.6f', rate),
                 'cap', string.format('%.6f', cap), 'at', string.format('%.3f', now),
                 'hit', string.format('%.3f', now))
      redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[12]))
      cut = tostring(rate)
    end
  end
end
return {math.ceil(untill - now), cut}
