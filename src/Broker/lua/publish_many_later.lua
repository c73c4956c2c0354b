-- Schedules many messages for later in one round trip (a bulk submission with a delay): each becomes a member of the
-- queue's delayed set, all due at Redis's own clock plus the delay (producers' clocks do not matter); the movers are
-- woken so a sooner due time is not missed. A member is as publish.lua makes it: the priority prefix, then
-- 's=<hex>\n' when signed, then the data.
-- KEYS[1] the delayed set
-- ARGV[1] delay, ms; ARGV[2] wake channel; ARGV[3] the members' priority prefix ('' for normal);
-- ARGV[4] '1' when each message is followed by its signature, else '0'; then the messages (and signatures)
-- Returns the number of messages scheduled.
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local signed = ARGV[4] == '1'
local added = 0
local i = 5
while i <= #ARGV do
  if signed then
    redis.call('ZADD', KEYS[1], due, ARGV[3] .. 's=' .. ARGV[i + 1] .. '\n' .. ARGV[i])
    i = i + 2
  else
    redis.call('ZADD', KEYS[1], due, ARGV[3] .. ARGV[i])
    i = i + 1
  end
  added = added + 1
end
redis.call('PUBLISH', ARGV[2], due)
return added
