-- Start a queued batch: from now on the process sending it keeps its lease alive.
-- KEYS[1]  the job stream
-- KEYS[2]  the batch's lease key
-- ARGV[1]  consumer group
-- ARGV[2]  the batch id (its consumer name)
-- ARGV[3]  lease (ms)
-- Returns false when the batch is not queued: another copy of the task runs it, or its
-- entries were taken over after its lease lapsed. A lease that lapsed while the batch still
-- holds its entries (Redis restarted, or its batcher stalled) lost nothing: it starts.
-- A stale task does nothing. Otherwise
-- {Redis time (ms), {entry id, deliveries, job field or false, stamp field or ''} per entry
-- the batch holds, oldest first}: the time is the clock the entry ids were made with, to age
-- them. (An entry deleted meanwhile has no job field: false.)
local lease = redis.call('GET', KEYS[2])
if lease ~= 'queued' then
  if lease or #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
    return false
  end
end
redis.call('SET', KEYS[2], 'running', 'PX', ARGV[3])
local out = {}
for i, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000, ARGV[2])) do
  local body, stamp = false, ''
  local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])[1]
  if entry then
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'job' then
        body = fields[f + 1]
      elseif fields[f] == 'stamp' then
        stamp = fields[f + 1]
      end
    end
    if not body then body = '' end
  end
  out[i] = {p[1], p[4], body, stamp}
end
local t = redis.call('TIME')
return {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), out}
