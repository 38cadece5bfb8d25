-- Give entries a batch will not send in this run back, before it sends the rest: they wait
-- under a holder of their own and are taken over when its lease lapses, with no delivery
-- counted, even if the batch's process dies while sending the rest.
-- KEYS[1]  the job stream
-- KEYS[2]  the waiting holder's lease key
-- ARGV[1]  consumer group
-- ARGV[2]  the waiting holder's name ('w-...')
-- ARGV[3]  how long they wait (ms)
-- ARGV[4]  JSON array of entry ids
local ids = cjson.decode(ARGV[4])
if #ids == 0 then return 0 end
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], '0'}
for _, id in ipairs(ids) do args[#args + 1] = id end
args[#args + 1] = 'JUSTID'
local moved = #redis.call(unpack(args))
redis.call('SET', KEYS[2], 'waiting', 'PX', ARGV[3])
return moved
