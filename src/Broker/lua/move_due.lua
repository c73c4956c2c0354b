-- Moves the delayed messages that are due into the stream, atomically: with several workers running
-- this, each message is moved exactly once.
-- KEYS[1] delayed sorted set; KEYS[2] stream
-- ARGV[1] most to move at once
-- Returns { moved, ms until the next one is due (-1 when none is waiting) }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'data', member)
  redis.call('ZREM', KEYS[1], member)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then
  return { #due, math.max(0, tonumber(next[2]) - now) }
end
return { #due, -1 }
