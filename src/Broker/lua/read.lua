-- Reads up to ARGV[3] new entries for a consumer, higher priorities first (read_new.lua, prepended when loaded).
-- KEYS[1] high stream; KEYS[2] normal stream; KEYS[3] low stream
-- ARGV[1] consumer group; ARGV[2] consumer name; ARGV[3] count; ARGV[4] the consumer's read number
-- Returns { 1 if the high or low stream holds any entry (waiting or running) else 0,
--           { { priority index (1 high, 2 normal, 3 low), { { id, fields }, ... } }, ... } }
local any, out = read_new({ KEYS[1], KEYS[2], KEYS[3] }, ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]) % 8)
return { any, out }
