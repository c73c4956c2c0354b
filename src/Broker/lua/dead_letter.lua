-- Moves an entry to the dead-letter stream with the reason, then acks and deletes it: atomically,
-- so a message is never in both places nor in neither.
-- KEYS[1] stream; KEYS[2] dead-letter stream
-- ARGV[1] consumer group; ARGV[2] entry id; ARGV[3] data; ARGV[4] reason; ARGV[5] task id ('' if unknown);
-- ARGV[6] delivery count; ARGV[7] max dead letters kept (approximate trim); ARGV[8] priority
-- A signed message keeps its signature, so that it can be requeued.
local sig = ''
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if entry[1] then
  local fields = entry[1][2]
  for j = 1, #fields, 2 do
    if fields[j] == 'sig' then sig = fields[j + 1] end
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*',
  'data', ARGV[3], 'reason', ARGV[4], 'task_id', ARGV[5], 'deliveries', ARGV[6], 'source_id', ARGV[2],
  'priority', ARGV[8], 'sig', sig)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
