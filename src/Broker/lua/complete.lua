-- Saves a batch's results and then acknowledges their messages, in one round trip: the results as
-- set_results.lua does (a cancelled task keeps its TaskCancelled result; waiters are pushed each one, on its own
-- channel only while some process is registered as waiting on such channels: see watch.lua), then
-- XACK + XDEL of the entries per priority stream. Should a SET fail, the script stops before any ack.
-- Then, when asked, it reads the next messages for the slots the batch frees, as read.lua does (read_new.lua,
-- prepended when loaded): one round trip per batch instead of two.
-- KEYS[1] cancelled-tasks set; KEYS[2..n+1] result keys; KEYS[n+2], KEYS[n+3], KEYS[n+4] high, normal, low streams;
-- KEYS[n+5] the watchers set
-- ARGV[1] result TTL, ms; ARGV[2] n; ARGV[3..n+2] the results' JSON; ARGV[n+3..2n+2] the inbox each is also
-- pushed to ('' for none; the message is the key, a newline, the JSON); ARGV[2n+3] consumer group;
-- ARGV[2n+4..2n+6] how many entry ids of each stream follow (high, normal, low); then the ids, in that order;
-- then the consumer's name, how many messages to read (0: none), and its read number.
-- Returns { any high or low entry (1/0; 0 when nothing was to be read), { { priority index, { { id, fields }, ... } }, ... } }
local n = tonumber(ARGV[2])
local anyCancelled = redis.call('EXISTS', KEYS[1]) == 1
local watched = false
if redis.call('EXISTS', KEYS[n + 5]) == 1 then
  local t = redis.call('TIME')
  watched = redis.call('ZCOUNT', KEYS[n + 5], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), '+inf') > 0
end
for i = 1, n do
  local key = KEYS[i + 1]
  if not (anyCancelled and redis.call('ZSCORE', KEYS[1], key)) then
    redis.call('SET', key, ARGV[i + 2], 'PX', ARGV[1])
    if watched then redis.call('PUBLISH', '__taskiq_result__:' .. key, ARGV[i + 2]) end
    local inbox = ARGV[n + i + 2]
    if inbox ~= '' then redis.call('PUBLISH', inbox, key .. '\n' .. ARGV[i + 2]) end
  end
end
local group = ARGV[2 * n + 3]
local at = 2 * n + 7
for s = 1, 3 do
  local count = tonumber(ARGV[2 * n + 3 + s])
  if count > 0 then
    local ids = {}
    for j = 0, count - 1 do ids[#ids + 1] = ARGV[at + j] end
    redis.call('XACK', KEYS[n + 1 + s], group, unpack(ids))
    redis.call('XDEL', KEYS[n + 1 + s], unpack(ids))
    at = at + count
  end
end
local consumer, left, turn = ARGV[at], tonumber(ARGV[at + 1] or 0), tonumber(ARGV[at + 2] or 0) % 8
if left and left > 0 then
  local any, out = read_new({ KEYS[n + 2], KEYS[n + 3], KEYS[n + 4] }, group, consumer, left, turn)
  return { any, out }
end
return { 0, {} }
