-- Count units the API accepted for a channel, by second (what ADAPTIVE_RATE learns from).
-- KEYS[1]  the channel's counter (hash: sec, cur = units in second `sec`, prev = in sec - 1)
-- ARGV[1]  units accepted
local t = redis.call('TIME')
local sec = tonumber(t[1])
local s = redis.call('HMGET', KEYS[1], 'sec', 'cur')
local last, cur = tonumber(s[1] or '0'), tonumber(s[2] or '0')
if last == sec then
  redis.call('HINCRBY', KEYS[1], 'cur', ARGV[1])
else
  local prev = 0
  if last == sec - 1 then
    prev = cur
  end
  redis.call('HSET', KEYS[1], 'sec', sec, 'cur', ARGV[1], 'prev', prev)
end
redis.call('PEXPIRE', KEYS[1], 5000)
return 1
