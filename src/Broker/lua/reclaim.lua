-- Claims entries idle longer than the lease (their consumer died or stalled), continuing a cursor,
-- and reports how often each has been delivered so that poison messages can be dead-lettered.
-- KEYS[1] stream
-- ARGV[1] consumer group; ARGV[2] consumer name; ARGV[3] min idle, ms; ARGV[4] cursor; ARGV[5] count
-- Returns { next cursor, { { id, fields, delivery count }, ... } }
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, entry in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  local count = 1
  if p[1] then count = p[1][4] end
  out[#out + 1] = { entry[1], entry[2], count }
end
return { r[1], out }
