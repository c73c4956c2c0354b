-- Registers a process that waits on results' own channels ('__taskiq_result__:' .. key) until ARGV[2] ms from
-- now, by Redis's clock (so no client's clock matters), and drops registrations that lapsed. A worker's
-- completion script publishes on those channels only while the set holds a live registration.
-- KEYS[1] the watchers sorted set; ARGV[1] the process's member; ARGV[2] how long the registration lasts, ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
