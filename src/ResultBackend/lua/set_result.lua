-- Stores a result with its TTL and publishes it to whoever waits, in one round trip.
-- KEYS[1] result key
-- ARGV[1] result JSON; ARGV[2] TTL, ms; ARGV[3] notification channel
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
