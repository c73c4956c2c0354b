-- Schedules a message for later: adds it to the queue's delayed set, due at Redis's own clock plus the
-- delay (so producers' clocks do not matter), and wakes the movers so a sooner due time is not missed.
-- KEYS[1] delayed sorted set
-- ARGV[1] message data; ARGV[2] delay, ms; ARGV[3] wake channel
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], due, ARGV[1])
redis.call('PUBLISH', ARGV[3], due)
return due
