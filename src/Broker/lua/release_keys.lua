-- Lets idempotency keys go, each only while the task that took it still holds it.
-- KEYS[1..n] idempotency keys; ARGV[1..n] the task id expected at KEYS[i]
-- Returns the number of keys released.
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
