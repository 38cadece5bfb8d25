-- Move one dead-lettered job back to its stream, to be sent again: the only way a `failed`
-- jobId becomes sendable (the ledger never lets a batch claim it otherwise).
-- KEYS[1]  the dead-letter stream
-- KEYS[2]  the job's channel stream
-- KEYS[3]  the job's ledger key
-- ARGV[1]  the dead-letter entry id
-- ARGV[2]  the job (JSON) as it was enqueued
-- Returns the new stream entry id. A jobId that finished otherwise meanwhile (accepted or
-- rejected) keeps its state, so the replayed entry is only acknowledged.
if redis.call('GET', KEYS[3]) == 'failed' then
  redis.call('DEL', KEYS[3])
end
local id = redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
