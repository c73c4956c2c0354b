-- Moves the delayed messages that are due into their priority's stream, atomically: with several workers
-- running this, each message is moved exactly once. A member is the message data, prefixed with
-- 'high\n' or 'low\n' for those priorities, then 's=<hex>\n' when signed (data itself starts with '{').
-- KEYS[1] delayed sorted set; KEYS[2] high stream; KEYS[3] normal stream; KEYS[4] low stream
-- ARGV[1] most to move at once
-- Returns { moved, ms until the next one is due (-1 when none is waiting) }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local stream, data = KEYS[3], member
  local p = string.match(member, '^(%l+)\n')
  if p == 'high' then
    stream, data = KEYS[2], string.sub(member, 6)
  elseif p == 'low' then
    stream, data = KEYS[4], string.sub(member, 5)
  end
  local sig = string.match(data, '^s=(%x+)\n')
  if sig then
    redis.call('XADD', stream, '*', 'data', string.sub(data, #sig + 4), 'sig', sig)
  else
    redis.call('XADD', stream, '*', 'data', data)
  end
  redis.call('ZREM', KEYS[1], member)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then
  return { #due, math.max(0, tonumber(next[2]) - now) }
end
return { #due, -1 }
