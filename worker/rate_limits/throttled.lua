-- A 429 on an endpoint, for every pod (effective.lua first): pause the endpoint until its
-- Retry-After (or an exponential backoff by the 429s in a row), and with ADAPTIVE_RATE cut
-- the channel's rate in force (multiplicative decrease; effective.lua climbs it back), or,
-- where none is in force yet, start it just under what the API accepted meanwhile.
-- KEYS[1]  the endpoint's pause (hash: until ms, strikes = 429s since it was last forgotten)
-- KEYS[2]  the channel's adaptive state (hash: rate, cap, at, hit = ms of the last cut)
-- KEYS[3]  the channel's accepted units (hash: from, first, last, per second; accepted.lua)
-- ARGV[1]  Retry-After (ms; -1: none)
-- ARGV[2]  first backoff (ms), ARGV[3] longest backoff (ms)
-- ARGV[4]  strikes (and the pause) forgotten this long after the pause ends (ms)
-- ARGV[5]  '1' with ADAPTIVE_RATE
-- ARGV[6]  the channel's configured limit (units/s; 0: none)
-- ARGV[7]  increase, ARGV[8] creep (effective.lua)
-- ARGV[9]  decrease (the rate in force is multiplied by it), ARGV[10] cap margin (the cap is
--          the rate in force at the 429 times it; a learnt rate and its cap are the accepted
--          rate times it)
-- ARGV[11] 429s within this long of the last cut are the same event: no second cut (ms)
-- ARGV[12] the adaptive state is forgotten this long after the last cut (ms)
-- ARGV[13] the lowest rate a cut goes to (units/s)
-- ARGV[14] the accepted units' window (s; accepted.lua)
-- ARGV[15] no rate is learnt before the accepted units span this long (ms)
-- Returns {ms the endpoint is paused from now, the channel's new rate as text ('' if not cut)}.

-- Units a second the API accepted: over the window, or, where the count began inside it,
-- from its first request (left out: it went on the operator's burst, not its rate) to its
-- latest; 0 while the count spans less than `learn` ms.
local function accepted_rate(key, window, learn, now)
  local h = redis.call('HGETALL', key)
  local sec = math.floor(now / 1000)
  local fields, units = {}, 0
  for i = 1, #h, 2 do
    local s = tonumber(h[i])
    if s then
      if s > sec - window then
        units = units + tonumber(h[i + 1])
      end
    else
      fields[h[i]] = tonumber(h[i + 1])
    end
  end
  local from, last = fields['from'], fields['last']
  if not from or last - from < learn then
    return 0
  end
  local start = (sec - window + 1) * 1000
  if from >= start then
    return (units - fields['first']) * 1000 / (last - from)
  end
  return units * 1000 / (now - start)
end

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
    local rate, cap = 0, 0
    if current > 0 then
      rate = current * tonumber(ARGV[9])
      cap = current * tonumber(ARGV[10])
    else
      -- No rate yet: the channel sent as fast as the shared pause let it, so what the API
      -- took meanwhile is the operator's rate (none learnt until it spans long enough).
      rate = accepted_rate(KEYS[3], tonumber(ARGV[14]), tonumber(ARGV[15]), now)
        * tonumber(ARGV[10])
      cap = rate
    end
    if rate > 0 then
      rate = math.max(tonumber(ARGV[13]), rate)
      cap = math.max(rate, cap)
      redis.call('HSET', KEYS[2], 'rate', string.format('%.6f', rate),
                 'cap', string.format('%.6f', cap), 'at', string.format('%.3f', now),
                 'hit', string.format('%.3f', now))
      redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[12]))
      cut = tostring(rate)
    end
  end
end
return {math.ceil(untill - now), cut}
