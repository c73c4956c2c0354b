-- Moves dead letters back into the queue: each one's original data is added to its priority's stream as a
-- new entry (with no 'deliveries' field, so its delivery count starts over) and the dead letter is deleted,
-- atomically, so a message is never in both places nor in neither. A dead letter without a 'data' field is
-- left alone.
-- KEYS[1] dead-letter stream; KEYS[2] normal stream; KEYS[3] high stream; KEYS[4] low stream
-- ARGV[1] most to move; ARGV[2..n] dead-letter ids (none: the oldest ARGV[1] that have data)
-- Returns the number of dead letters moved (ids that are not dead letters are skipped).
local max = tonumber(ARGV[1])
local moved = 0
local function requeue(entry)
  local fields, data, stream, sig = entry[2], nil, KEYS[2], ''
  for j = 1, #fields, 2 do
    if fields[j] == 'data' then data = fields[j + 1] end
    if fields[j] == 'sig' then sig = fields[j + 1] end
    if fields[j] == 'priority' and fields[j + 1] == 'high' then stream = KEYS[3] end
    if fields[j] == 'priority' and fields[j + 1] == 'low' then stream = KEYS[4] end
  end
  if data == nil then return end
  if sig == '' then
    redis.call('XADD', stream, '*', 'data', data)
  else
    redis.call('XADD', stream, '*', 'data', data, 'sig', sig)
  end
  redis.call('XDEL', KEYS[1], entry[1])
  moved = moved + 1
end
if #ARGV > 1 then
  for i = 2, #ARGV do
    local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if e[1] then requeue(e[1]) end
  end
  return moved
end
-- Oldest first, scanning past the dead letters that stay.
local start = '-'
while moved < max do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', max - moved)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do requeue(entry) end
  start = '(' .. batch[#batch][1]
end
return moved
