-- Count units the API accepted for a channel, by second over a sliding window (what
-- ADAPTIVE_RATE learns a rate from where none is in force; throttled.lua reads it).
-- KEYS[1]  the channel's counter (hash: from = ms of the first count since the hash was made,
--          first = its units, last = ms of the latest count, and per unix second (the field
--          is the second) the units accepted in it, for the last ARGV[2] seconds only; the
--          hash goes ARGV[2] s after the latest count)
-- ARGV[1]  units accepted
-- ARGV[2]  the window (s)
local t = redis.call('TIME')
local sec = tonumber(t[1])
local window = tonumber(ARGV[2])
local now = string.format('%.3f', sec * 1000 + tonumber(t[2]) / 1000)
if redis.call('HSETNX', KEYS[1], 'from', now) == 1 then
  redis.call('HSET', KEYS[1], 'first', ARGV[1])
end
redis.call('HSET', KEYS[1], 'last', now)
redis.call('HINCRBY', KEYS[1], tostring(sec), ARGV[1])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local s = tonumber(field)
  if s and s <= sec - window then
    redis.call('HDEL', KEYS[1], field)
  end
end
redis.call('PEXPIRE', KEYS[1], window * 1000)
return 1
