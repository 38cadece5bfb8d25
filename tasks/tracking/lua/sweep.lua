-- Drop the parked events whose wait is over: their messageUuid never became known (a message
-- of another system's account, or one whose outcome was lost). Prepended with status.lua.
-- ARGV[1]  key names (JSON; see status.lua)
-- ARGV[2]  most messages swept in one call
-- Returns {messages swept, events dropped}.
local N = cjson.decode(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', N.parkedIndex, '-inf', now_ms(), 'LIMIT', 0, ARGV[2])
local events = 0
for _, uuid in ipairs(due) do
  events = events + redis.call('LLEN', N.parked .. uuid)
  redis.call('DEL', N.parked .. uuid)
  redis.call('ZREM', N.parkedIndex, uuid)
end
return {#due, events}
