-- Publishes many messages to one stream in one round trip (a bulk submission).
-- KEYS[1] stream
-- ARGV[1] '1' when each message is followed by its signature, else '0'; then the messages (and signatures)
-- Returns the number of messages added.
local signed = ARGV[1] == '1'
local added = 0
local i = 2
while i <= #ARGV do
  if signed then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i], 'sig', ARGV[i + 1])
    i = i + 2
  else
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i])
    i = i + 1
  end
  added = added + 1
end
return added
