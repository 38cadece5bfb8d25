-- Take over the entries of a holder whose lease is gone (its process died), or forget the
-- holder when it holds nothing. A live holder is never touched.
-- KEYS[1]  the job stream
-- KEYS[2]  the dead holder's lease key
-- ARGV[1]  consumer group
-- ARGV[2]  the dead holder's consumer name
-- ARGV[3]  the new holder (the reclaiming reader)
-- ARGV[4]  most entries to take in one call
-- Returns false if the holder is alive; else the ids of the entries taken. Their delivery
-- count goes up by one (a holder died with them), except from a 'w-' holder (entries given
-- back unsent by a live batch). Entries deleted meanwhile are only acknowledged.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[4], ARGV[2])
if #pending == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return {}
end
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[3], '0'}
for _, p in ipairs(pending) do
  args[#args + 1] = p[1]
end
if string.sub(ARGV[2], 1, 2) == 'w-' then
  args[#args + 1] = 'JUSTID'
end
local found = {}
local out = {}
for _, entry in ipairs(redis.call(unpack(args))) do
  if type(entry) == 'string' then
    found[entry] = true
    out[#out + 1] = entry
  elseif entry and entry[2] then
    found[entry[1]] = true
    out[#out + 1] = entry[1]
  end
end
for _, p in ipairs(pending) do
  if not found[p[1]] then
    redis.call('XACK', KEYS[1], ARGV[1], p[1])
  end
end
return out
