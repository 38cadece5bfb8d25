-- Take the messages due for a lookup: each is given its next lookup time (the pause doubling
-- per lookup, up to a maximum, never past its give-up time) before it is looked up, so a
-- poller that dies loses nothing. A message past its give-up time gets its final status
-- `unknown` in this same step. Prepended with status.lua.
-- ARGV[1]  key names (JSON; see status.lua)
-- ARGV[2]  most messages taken
-- ARGV[3]  first pause (ms): STATUS_POLL_AFTER_S
-- ARGV[4]  longest pause (ms)
-- ARGV[5]  give up (ms after acceptance)
-- ARGV[6]  ledger ttl (s): how long a job's status history is kept
-- ARGV[7]  '1' to hand out lookups; '0' (the API circuit is open) to give up only
-- ARGV[8]  the time of a give-up, as the entry shows it (UTC ISO 8601)
-- Returns {messageUuids to look up, {channel, ms since acceptance} per give-up, messages
-- whose record had expired (their jobId is forgotten: nothing can be published for them)}.
local N = cjson.decode(ARGV[1])
local now = now_ms()
local give_up_ms, lookups = tonumber(ARGV[5]), ARGV[7] == '1'
local due = redis.call('ZRANGEBYSCORE', N.tracking, '-inf', now, 'LIMIT', 0, ARGV[2])
local lookup, given_up, vanished = {}, {}, 0
for _, uuid in ipairs(due) do
  local key = N.message .. uuid
  local m = redis.call('HMGET', key, 'accepted', 'final', 'channel')
  if not m[1] then
    redis.call('ZREM', N.tracking, uuid)
    vanished = vanished + 1
  elseif m[2] == '1' then
    redis.call('ZREM', N.tracking, uuid)
  elseif now - tonumber(m[1]) >= give_up_ms then
    redis.call('ZREM', N.tracking, uuid)
    apply(N, {uuid, 'give_up', 'unknown', ARGV[8], '', '', m[3], 'poll', ARGV[8]}, ARGV[6])
    given_up[#given_up + 1] = {m[3], now - tonumber(m[1])}
  elseif lookups then
    local polls = redis.call('HINCRBY', key, 'polls', 1)
    local pause = math.min(tonumber(ARGV[3]) * 2 ^ polls, tonumber(ARGV[4]))
    local next_ms = math.min(now + math.floor(pause), tonumber(m[1]) + give_up_ms)
    redis.call('ZADD', N.tracking, next_ms, uuid)
    lookup[#lookup + 1] = uuid
  end
end
return {lookup, given_up, vanished}
