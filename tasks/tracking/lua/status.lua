-- The status model (see tasks/tracking/__init__.py), prepended to the scripts that apply events:
-- record.lua (callbacks and lookups) and worker/lua/finish.lua (when a message's jobId becomes
-- known, the callbacks parked under its messageUuid are applied at once).
-- N: key names, {message, parked, parkedIndex, tracking, statuses, track} (tasks/keys.py); the
--    per-message and per-job ones are prefixes to which the uuid or jobId is appended.
-- An event is an array {messageUuid, event, status, statusTime, errorCode, price JSON,
-- channelType, source, receivedAt}, all strings; errorCode and price are '' when absent.
local FINAL = {delivered = true, undelivered = true, unsent = true, unknown = true}
local READ = {read = true, unread = true}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Keeps an event of a message whose jobId is not known yet; it is applied when the jobId is
-- (finish.lua), or counted unmatched when `until_ms` passes (sweep.lua). The list outlives
-- the index by an hour so that a sweep that comes late still counts it.
local function park(N, ev, until_ms)
  local key = N.parked .. ev[1]
  redis.call('RPUSH', key, cjson.encode(ev))
  redis.call('PEXPIREAT', key, until_ms + 3600000)
  redis.call('ZADD', N.parkedIndex, until_ms, ev[1])
  return 'parked'
end

-- Publishes one change of message `m` (the HMGET of `apply`, updated): an entry on the
-- statuses stream, its id on the job's track list.
local function publish(N, m, ev, final, ttl)
  local entry = cjson.encode({
    jobId = m[1], messageUuid = ev[1], channelType = m[2], event = ev[2],
    status = m[3] or cjson.null, final = final, statusTime = m[5] or cjson.null,
    errorCode = m[6] and tonumber(m[6]) or cjson.null,
    price = m[7] and cjson.decode(m[7]) or cjson.null, source = ev[8], receivedAt = ev[9]})
  local id = redis.call('XADD', N.statuses, '*', 'status', entry)
  redis.call('RPUSH', N.track .. m[1], 's' .. id)
  redis.call('EXPIRE', N.track .. m[1], ttl)
end

-- Applies an event to a message whose jobId is known: 'duplicate' (seen before), 'stale'
-- (nothing new: a pending status after a later one, anything but read/unread after the final
-- status, a status the API may add one day), 'changed' (an entry published), or 'final' (the
-- change made it final: `read`/`unread` before any final status mean it was delivered, so
-- the final `delivered` entry is published first).
local function apply(N, ev, ttl)
  local key = N.message .. ev[1]
  if redis.call('HSETNX', key, 'seen:' .. ev[2] .. '|' .. ev[3] .. '|' .. ev[4], 1) == 0 then
    return 'duplicate'
  end
  local m = redis.call('HMGET', key, 'job', 'channel', 'status', 'final', 'statusTime',
    'errorCode', 'price')
  local status, s, final = m[3], ev[3], m[4] == '1'
  local change
  if final then
    change = READ[s] ~= nil and s ~= status
  elseif FINAL[s] or READ[s] then
    change = true
  elseif s == 'sent' then
    change = not status or status == 'sending'
  else
    change = s == 'sending' and not status
  end
  local priced = ev[6] ~= '' and ev[6] ~= m[7]
  if not change and not priced then
    return 'stale'
  end
  if priced then
    m[7] = ev[6]
    redis.call('HSET', key, 'price', ev[6])
  end
  if ev[5] ~= '' and change then
    m[6] = ev[5]
    redis.call('HSET', key, 'errorCode', ev[5])
  end
  local reached = change and not final
  if reached and READ[s] then
    m[3], m[5] = 'delivered', ev[4]
    publish(N, m, ev, true, ttl)
  end
  if change then
    m[3], m[5] = s, ev[4]
    redis.call('HSET', key, 'status', s, 'statusTime', ev[4])
  end
  reached = reached and (FINAL[s] ~= nil or READ[s] ~= nil)
  if reached then
    redis.call('HSET', key, 'final', '1')
    redis.call('ZREM', N.tracking, ev[1])
  end
  publish(N, m, ev, reached and FINAL[s] ~= nil, ttl)
  if reached then
    return 'final'
  end
  return 'changed'
end
