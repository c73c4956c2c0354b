-- Stores a task's progress beside its result (taskiq-redis's '<key>__progress') and pushes it to watchers.
-- KEYS[1] progress key; ARGV[1] progress JSON; ARGV[2] TTL, ms; ARGV[3] channel
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('PUBLISH', ARGV[3], ARGV[1])
