-- Cancels a task that has no result yet, atomically: records it among the cancelled tasks (for workers that
-- start later), stores its TaskCancelled result, pushes that to waiters and tells the running workers.
-- KEYS[1] cancelled-tasks sorted set (member: result key, score: when to forget it); KEYS[2] result key
-- ARGV[1] result JSON; ARGV[2] result TTL, ms; ARGV[3] how long to remember the cancellation, ms;
-- ARGV[4] the result's channel; ARGV[5] the cancellation channel
-- Returns 1 when cancelled, 0 when the task already had a result (which is kept).
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('PUBLISH', ARGV[5], KEYS[2])
return 1
