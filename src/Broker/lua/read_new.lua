-- Shared by read.lua and complete.lua (prepended to each when loaded): reads up to `left` new entries for a consumer,
-- higher priorities first. So that lower priorities are never starved completely, two reads in eight start lower:
-- one at normal, one at low. While neither the high nor the low stream holds anything, only the normal one is read.
-- streams: { high, normal, low } stream keys; turn: the consumer's read number, modulo 8
-- Returns 1 if the high or low stream holds any entry (waiting or running) else 0, and
-- { { priority index (1 high, 2 normal, 3 low), { { id, fields }, ... } }, ... }
local function read_new(streams, group, consumer, left, turn)
  local any = 0
  if redis.call('XLEN', streams[1]) + redis.call('XLEN', streams[3]) > 0 then any = 1 end
  local order = { 1, 2, 3 }
  if any == 0 then order = { 2 } elseif turn == 3 then order = { 2, 3, 1 } elseif turn == 7 then order = { 3, 2, 1 } end
  local out = {}
  for _, i in ipairs(order) do
    if left <= 0 then break end
    local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', streams[i], '>')
    if r and r[1] and #r[1][2] > 0 then
      out[#out + 1] = { i, r[1][2] }
      left = left - #r[1][2]
    end
  end
  return any, out
end
