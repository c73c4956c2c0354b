-- Acknowledges stream entries and deletes them, so the stream holds only unfinished work.
-- KEYS[1] stream
-- ARGV[1] consumer group; ARGV[2..n] entry ids
-- Returns the number of entries that were still pending (0 means another consumer already acked).
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return acked
