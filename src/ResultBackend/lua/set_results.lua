-- Stores results with their TTL and publishes each to whoever waits for it, all in one round trip.
-- A cancelled task keeps its TaskCancelled result: a worker finishing it anyway does not overwrite it.
-- KEYS[1] the cancelled-tasks sorted set; KEYS[2..n+1] result keys
-- ARGV[1] TTL, ms; ARGV[i] (i = 2..n+1) the JSON of the result at KEYS[i]; ARGV[n+i] the inbox it is also
-- pushed to ('' for none)
-- Waiters listen on '__taskiq_result__:' .. key (the message is the result's JSON), or on a process inbox
-- (the message is the key, a newline, the JSON).
local n = #KEYS - 1
local anyCancelled = redis.call('EXISTS', KEYS[1]) == 1
local stored = 0
for i = 2, n + 1 do
  if not (anyCancelled and redis.call('ZSCORE', KEYS[1], KEYS[i])) then
    redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[1])
    redis.call('PUBLISH', '__taskiq_result__:' .. KEYS[i], ARGV[i])
    local inbox = ARGV[n + i]
    if inbox and inbox ~= '' then redis.call('PUBLISH', inbox, KEYS[i] .. '\n' .. ARGV[i]) end
    stored = stored + 1
  end
end
return stored
