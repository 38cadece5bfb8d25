-- One request's budget over several GCRA buckets at once, reserved (effective.lua first).
-- KEYS[1]  the endpoint's pause (hash: until, ms): nobody sends before it
-- KEYS[2]  the channel's adaptive state (effective.lua)
-- KEYS[3..] the buckets' theoretical arrival times (TAT, ms as text; missing: full bucket);
--           the first is the channel's
-- ARGV[1]  units of the request (n)
-- ARGV[2]  the burst (ms of each bucket's rate that may go at once)
-- ARGV[3]  '1' with ADAPTIVE_RATE: the channel's bucket runs at its effective rate
-- ARGV[4], ARGV[5]  the adaptive increase and creep (a second)
-- ARGV[6 + 4(i-1) ..] per bucket i: rate (units/s; 0: no limit, skipped), charged ('1'; '0':
--           only read, by another bucket's 'hides'), hides (index of a bucket whose future
--           reservations this one does not see; 0: none), share (of that bucket's reserved
--           time that counts here)
-- Bucket b (T = 1000/rate ms, tau = max(burst, n*T)) lets the request go at
-- g = max(now, tat + n*T - tau); it goes at G = max(pause, every g); each charged bucket's TAT
-- becomes max(tat, G) + n*T. `hides` keeps a code's view of the account bucket free of the
-- bulk lane's reservations for later: bulk is held to its share by its own bucket, so those
-- reservations are the bulk lane's future, not the codes' present.
-- Returns {ms to wait before sending, the channel bucket's rate as text (0: none)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local count = #KEYS - 2
local rates, charged, hides, shares, tats = {}, {}, {}, {}, {}
for i = 1, count do
  local base = 6 + 4 * (i - 1)
  rates[i] = tonumber(ARGV[base])
  charged[i] = ARGV[base + 1] == '1'
  hides[i] = tonumber(ARGV[base + 2])
  shares[i] = tonumber(ARGV[base + 3])
  tats[i] = math.max(now, tonumber(redis.call('GET', KEYS[i + 2]) or '0'))
end
if ARGV[3] == '1' then
  rates[1] = effective_rate(KEYS[2], rates[1], tonumber(ARGV[4]), tonumber(ARGV[5]), now)
end
local go = math.max(now, tonumber(redis.call('HGET', KEYS[1], 'until') or '0'))
for i = 1, count do
  if charged[i] and rates[i] > 0 then
    local cost = n * 1000 / rates[i]
    local seen = tats[i]
    if hides[i] > 0 then
      seen = seen - shares[i] * (tats[hides[i]] - now)
    end
    go = math.max(go, seen + cost - math.max(burst, cost))
  end
end
for i = 1, count do
  if charged[i] and rates[i] > 0 then
    local tat = math.max(tats[i], go) + n * 1000 / rates[i]
    redis.call('SET', KEYS[i + 2], string.format('%.3f', tat), 'PX',
               math.ceil(tat - now) + 1000)
  end
end
return {math.ceil(go - now), tostring(rates[1])}
