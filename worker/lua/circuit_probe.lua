-- Pass the probe token on, or give it back, only if the caller still holds it: a batcher
-- passes it to the probe batch it cut; the batch gives it back when it ends.
-- KEYS[1]  the probe token key
-- ARGV[1]  who must hold it now
-- ARGV[2]  who holds it next (its lifetime kept), or '' to give it back
-- Returns 1 if the token changed hands, 0 if someone else held it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
