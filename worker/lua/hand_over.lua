-- Hand entries a reader holds over to a new batch, which becomes their one holder.
-- KEYS[1]  the job stream
-- KEYS[2]  the reader's lease key
-- KEYS[3]  the new batch's lease key
-- ARGV[1]  consumer group
-- ARGV[2]  the batch id (its consumer name in the group)
-- ARGV[3]  lease (ms)
-- ARGV[4]  JSON array of entry ids
-- Returns the number of entries handed over, or -1 if the reader's lease is gone (its
-- entries may have been reclaimed already: the reader must not take them back).
if redis.call('GET', KEYS[2]) ~= 'reader' then
  return -1
end
redis.call('SET', KEYS[3], 'queued', 'PX', ARGV[3])
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], '0'}
for _, id in ipairs(cjson.decode(ARGV[4])) do
  args[#args + 1] = id
end
args[#args + 1] = 'JUSTID'
return #redis.call(unpack(args))
