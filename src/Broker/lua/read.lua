-- Reads up to ARGV[3] new entries for a consumer, higher priorities first. So that lower priorities are
-- never starved completely, two reads in eight start lower: one at normal, one at low.
-- KEYS[1] high stream; KEYS[2] normal stream; KEYS[3] low stream
-- ARGV[1] consumer group; ARGV[2] consumer name; ARGV[3] count; ARGV[4] the consumer's read number
-- Returns { 1 if the high or low stream holds any entry (waiting or running) else 0,
--           { { priority index (1 high, 2 normal, 3 low), { { id, fields }, ... } }, ... } }
local turn = tonumber(ARGV[4]) % 8
-- Whether the high or low stream holds anything: when neither does, only the normal stream is read.
local any = 0
if redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[3]) > 0 then any = 1 end
local order = { 1, 2, 3 }
if any == 0 then order = { 2 } elseif turn == 3 then order = { 2, 3, 1 } elseif turn == 7 then order = { 3, 2, 1 } end
local left = tonumber(ARGV[3])
local out = {}
for _, i in ipairs(order) do
  if left <= 0 then break end
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[i], '>')
  if r and r[1] and #r[1][2] > 0 then
    out[#out + 1] = { i, r[1][2] }
    left = left - #r[1][2]
  end
end
return { any, out }
