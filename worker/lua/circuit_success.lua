-- The API answered (a 2xx, or a 4xx about the messages): close the circuit, forget failures.
-- KEYS[1]  the circuit hash
-- Returns 1 if this closed an open circuit, else 0.
local state = redis.call('HGET', KEYS[1], 'state')
if state or redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1])
end
if state == 'open' then return 1 end
return 0
