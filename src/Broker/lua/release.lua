-- Hands entries back unfinished: each one this consumer still owns is re-added at the end of the stream
-- (so any consumer's next read gets it at once, not only after a lease) and the old entry is acked and
-- deleted. The delivery count travels along in the 'deliveries' field. Entries another consumer has
-- reclaimed meanwhile are left alone.
-- KEYS[1] stream
-- ARGV[1] consumer group; ARGV[2] consumer name; ARGV[3..n] entry ids
-- Returns the number of entries handed back.
local released = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] then
    local entry = redis.call('XRANGE', KEYS[1], id, id)
    if entry[1] then
      local fields = entry[1][2]
      local copy, previous = {}, 0
      for j = 1, #fields, 2 do
        if fields[j] == 'deliveries' then
          previous = tonumber(fields[j + 1]) or 0
        else
          copy[#copy + 1] = fields[j]
          copy[#copy + 1] = fields[j + 1]
        end
      end
      copy[#copy + 1] = 'deliveries'
      copy[#copy + 1] = previous + p[1][4]
      redis.call('XADD', KEYS[1], '*', unpack(copy))
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    released = released + 1
  end
end
return released
