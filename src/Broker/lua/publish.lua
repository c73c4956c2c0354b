-- Publishes a message that needs more than a plain XADD, atomically: taking an idempotency key, and/or
-- scheduling for later (the queue's delayed set, due at Redis's own clock plus the delay, so producers'
-- clocks do not matter; the movers are woken so a sooner due time is not missed).
-- KEYS[1] the stream (now) or the delayed set (later); KEYS[2] the idempotency key, if any
-- ARGV[1] message data; ARGV[2] delay, ms ('' for now); ARGV[3] wake channel;
-- ARGV[4] the delayed member's priority prefix ('' for normal); ARGV[5] task id taking the key; ARGV[6] its TTL, ms;
-- ARGV[7] the message's signature ('' for none; a delayed member carries it as a 's=<hex>\n' line)
-- Returns the id of the task that already holds the key (nothing was published), or false.
if KEYS[2] then
  local holder = redis.call('GET', KEYS[2])
  if holder then return holder end
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
end
if ARGV[2] == '' then
  if ARGV[7] == '' then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[1])
  else
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[1], 'sig', ARGV[7])
  end
else
  local t = redis.call('TIME')
  local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
  local sig = ''
  if ARGV[7] ~= '' then sig = 's=' .. ARGV[7] .. '\n' end
  redis.call('ZADD', KEYS[1], due, ARGV[4] .. sig .. ARGV[1])
  redis.call('PUBLISH', ARGV[3], due)
end
return false
