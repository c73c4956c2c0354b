-- Stores results with their TTL and publishes each to whoever waits for it, all in one round trip.
-- KEYS[1..n] result keys
-- ARGV[1] TTL, ms; ARGV[1 + i] the JSON of the result at KEYS[i]
-- Waiters listen on '__taskiq_result__:' .. key; the message is the result's JSON.
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
  redis.call('PUBLISH', '__taskiq_result__:' .. KEYS[i], ARGV[i + 1])
end
return #KEYS
