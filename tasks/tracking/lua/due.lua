-- Take the messages due for a lookup: each is given its next lookup time (the pause doubling
-- per lookup, up to a maximum) before it is looked up, so a poller that dies loses nothing.
-- Those past the give-up time are returned apart and leave the schedule. Prepended with
-- status.lua.
-- ARGV[1]  key names (JSON; see status.lua)
-- ARGV[2]  most messages taken
-- ARGV[3]  first pause (ms): STATUS_POLL_AFTER_S
-- ARGV[4]  longest pause (ms)
-- ARGV[5]  give up (ms after acceptance)
-- Returns {messageUuids to look up, {messageUuid, channel} pairs given up}.
local N = cjson.decode(ARGV[1])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', N.tracking, '-inf', now, 'LIMIT', 0, ARGV[2])
local lookup, given_up = {}, {}
for _, uuid in ipairs(due) do
  local key = N.message .. uuid
  local m = redis.call('HMGET', key, 'accepted', 'final', 'channel')
  if not m[1] or m[2] == '1' then
    redis.call('ZREM', N.tracking, uuid)
  elseif now - tonumber(m[1]) >= tonumber(ARGV[5]) then
    redis.call('ZREM', N.tracking, uuid)
    given_up[#given_up + 1] = {uuid, m[3]}
  else
    local polls = redis.call('HINCRBY', key, 'polls', 1)
    local pause = math.min(tonumber(ARGV[3]) * 2 ^ polls, tonumber(ARGV[4]))
    redis.call('ZADD', N.tracking, now + math.floor(pause), uuid)
    lookup[#lookup + 1] = uuid
  end
end
return {lookup, given_up}
