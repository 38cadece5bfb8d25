-- Each channel's effective rate and every endpoint's pause, read for `status` and the
-- metrics (effective.lua first); writes nothing.
-- KEYS[1..c]  the channels' adaptive states (effective.lua)
-- KEYS[c+1..] the endpoints' pauses (hash: until, ms)
-- ARGV[1]  c, the number of channels
-- ARGV[2]  '1' with ADAPTIVE_RATE
-- ARGV[3], ARGV[4]  increase and creep (effective.lua)
-- ARGV[5..4+c]  the channels' configured limits (units/s; 0: none)
-- Returns {effective rate of each channel as text..., ms each endpoint is still paused...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local c = tonumber(ARGV[1])
local out = {}
for i = 1, c do
  local rate = tonumber(ARGV[4 + i])
  if ARGV[2] == '1' then
    rate = effective_rate(KEYS[i], rate, tonumber(ARGV[3]), tonumber(ARGV[4]), now)
  end
  out[#out + 1] = tostring(rate)
end
for i = c + 1, #KEYS do
  local untill = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')
  out[#out + 1] = math.max(0, math.ceil(untill - now))
end
return out
