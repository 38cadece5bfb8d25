-- Take or keep a lease that one process at a time may hold (the status poller's).
-- KEYS[1]  the lease key
-- ARGV[1]  the holder's name
-- ARGV[2]  lease (ms)
-- Returns 1 when ARGV[1] holds it now (taken, or renewed), 0 when another does.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
