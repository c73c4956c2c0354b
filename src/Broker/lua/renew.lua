-- Renews the lease of entries (resets their idle time), but only those this consumer still owns:
-- an entry already reclaimed by another consumer is left with it.
-- KEYS[1] stream
-- ARGV[1] consumer group; ARGV[2] consumer name; ARGV[3..n] entry ids
-- Returns the ids this consumer owned (and so renewed).
local owned = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    owned[#owned + 1] = ARGV[i]
  end
end
if #owned > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(owned), 'JUSTID')
end
return owned
