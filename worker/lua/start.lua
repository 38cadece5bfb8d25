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
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000, ARGV[2])
-- A batch's entries are mostly one run of the stream: one XRANGE over their span (entries of
-- other holders in it are skipped) instead of one per entry; an entry beyond its COUNT is
-- read alone.
local span = {}
if #pending > 0 then
  local first, last = pending[1][1], pending[#pending][1]
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], first, last, 'COUNT', 2 * #pending)) do
    span[e[1]] = e[2]
  end
end
local out = {}
for i, p in ipairs(pending) do
  local body, stamp = false, ''
  local fields = span[p[1]]
  if not fields then
    local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])[1]
    fields = entry and entry[2]
  end
  if fields then
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
