import type { ScriptDefinition } from './scripts.js';

/**
 * The topic store's atomic steps as Lua scripts (docs/topic-protocol.md). Each touches the keys of one
 * namespace only (one hash tag), so they run on a Redis Cluster too. Record ids are `<ms>-*` with `<ms>`
 * from the instance's clock, never behind the topic's newest id (`lastms`), so ages follow one clock.
 */

/**
 * Drops the oldest records while the stream passes a bound, keeping `bytes` and `dropped` in the meta hash.
 * Within its bounds a stream costs one look at its oldest record; past one, records are read from the oldest
 * in pages of 100 and one XTRIM MINID cuts them all. (Paging on every call read 100 records per topic per
 * append and per read: a namespace read of 20 topics read 2,000.)
 */
const TRIM = `
local function trim(stream, meta, maxRecords, maxBytes, minMs)
  local len = redis.call('XLEN', stream)
  local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
  -- Within every bound (the common case, on each append and each read): one look at the oldest record.
  if len <= maxRecords and bytes <= maxBytes then
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    if not oldest or tonumber(string.match(oldest[1], '^(%d+)-')) >= minMs then return end
  end
  local dropped = 0
  local keep = false
  local from = '-'
  while not keep do
    local page = redis.call('XRANGE', stream, from, '+', 'COUNT', 100)
    if #page == 0 then break end
    for _, entry in ipairs(page) do
      local ms = tonumber(string.match(entry[1], '^(%d+)-'))
      if len > maxRecords or bytes > maxBytes or ms < minMs then
        len = len - 1
        bytes = bytes - string.len(entry[2][2])
        dropped = dropped + 1
        from = '(' .. entry[1]
      else
        keep = entry[1]
        break
      end
    end
  end
  if dropped > 0 then
    if keep then
      redis.call('XTRIM', stream, 'MINID', keep)
    else
      redis.call('XTRIM', stream, 'MAXLEN', 0)
    end
    redis.call('HSET', meta, 'bytes', bytes)
    redis.call('HINCRBY', meta, 'dropped', dropped)
  end
end
`;

/**
 * Appends a batch with its idempotency key, then trims the topic: one atomic step, so a batch is stored
 * exactly once or not at all, and a retry finds the first answer.
 * KEYS: [1] stream, [2] meta hash, [3] namespace index set, [4] idempotency key, [5] namespace announce stream
 * ARGV: [1] topic, [2] maxTopics, [3] maxRecords, [4] maxBytes, [5] oldest ms kept (age bound), [6] now ms,
 *       [7] idempotency window ms ('0': no key), [8..] the records
 * Output: {'ok', count, first id, last id, replay 0|1} | {'err', 'topics'}
 */
export const topicAppendScript: ScriptDefinition = {
  numberOfKeys: 5,
  lua: `${TRIM}
if ARGV[7] ~= '0' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local count, first, last = string.match(seen, '^(%d+) (%S+) (%S+)$')
    return {'ok', tonumber(count), first, last, 1}
  end
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[2]) then return {'err', 'topics'} end
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('XADD', KEYS[5], 'MAXLEN', '1', '*', 't', ARGV[1])
end
local ms = ARGV[6]
local lastms = redis.call('HGET', KEYS[2], 'lastms')
if lastms and tonumber(lastms) > tonumber(ms) then ms = lastms end
local first = false
local last = false
local bytes = 0
for i = 8, #ARGV do
  last = redis.call('XADD', KEYS[1], ms .. '-*', 'd', ARGV[i])
  if not first then first = last end
  bytes = bytes + string.len(ARGV[i])
end
redis.call('HINCRBY', KEYS[2], 'bytes', bytes)
redis.call('HSET', KEYS[2], 'lastms', ms)
trim(KEYS[1], KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local count = #ARGV - 7
if ARGV[7] ~= '0' then
  redis.call('SET', KEYS[4], count .. ' ' .. first .. ' ' .. last, 'PX', ARGV[7])
end
return {'ok', count, first, last, 0}
`,
};

/**
 * One read of a consumer of a group over one topic or every topic of a namespace read: trims ages, creates
 * the group on topics that lack it (at the group's start, kept per namespace), then hands out in order
 * (1) this consumer's pending records above `deliveredUpTo`, (2) records pending on another consumer idle
 * for `claimAfterMs` (XPENDING IDLE, then XCLAIM: unlike XAUTOCLAIM it leaves this consumer's own records
 * alone, which a follow stream has sent already), (3) new records (XREADGROUP >). Records trimmed while
 * pending are acknowledged away.
 * KEYS: [1] groups hash of the namespace, then per topic: stream, meta hash
 * ARGV: [1] group, [2] consumer, [3] count, [4] claimAfterMs, [5] now ms, [6] start 'earliest'|'latest',
 *       [7] most groups per namespace, then per topic: maxRecords, maxBytes, oldest ms kept, deliveredUpTo id
 * Output: {{topic index, id, data, deliveries, ...}, {newest id per topic ('0-0' when none)}} | {'err', 'groups'}
 */
export const topicReadScript: ScriptDefinition = {
  numberOfKeys: 0,
  lua: `${TRIM}
local group, consumer = ARGV[1], ARGV[2]
local remaining = tonumber(ARGV[3])
local began = redis.call('HGET', KEYS[1], group)
if not began then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[7]) then return {'err', 'groups'} end
  began = '0'
  if ARGV[6] == 'latest' then began = ARGV[5] end
  redis.call('HSET', KEYS[1], group, began)
end
local startId = '0'
if began ~= '0' then startId = tostring(tonumber(began) - 1) .. '-18446744073709551615' end
local n = (#KEYS - 1) / 2
local live = {}
for i = 1, n do
  local stream, meta, base = KEYS[2 * i], KEYS[2 * i + 1], 7 + (i - 1) * 4
  if redis.call('EXISTS', stream) == 1 then
    trim(stream, meta, tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]))
    pcall(redis.call, 'XGROUP', 'CREATE', stream, group, startId)
    live[i] = true
  end
end
local out = {}
local function hand(i, id, data, deliveries)
  out[#out + 1] = i
  out[#out + 1] = id
  out[#out + 1] = data
  out[#out + 1] = deliveries
  remaining = remaining - 1
end
for i = 1, n do
  if live[i] and remaining > 0 then
    local stream = KEYS[2 * i]
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining, 'STREAMS', stream, ARGV[7 + (i - 1) * 4 + 4])
    if reply then
      for _, entry in ipairs(reply[1][2]) do
        if entry[2] then
          local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
          hand(i, entry[1], entry[2][2], pending[1] and pending[1][4] or 1)
        else
          redis.call('XACK', stream, group, entry[1])
        end
      end
    end
  end
end
for i = 1, n do
  if live[i] and remaining > 0 then
    local stream = KEYS[2 * i]
    local stale = redis.call('XPENDING', stream, group, 'IDLE', ARGV[4], '-', '+', math.min(1000, remaining * 10))
    for _, pending in ipairs(stale) do
      if remaining <= 0 then break end
      if pending[2] ~= consumer then
        local claimed = redis.call('XCLAIM', stream, group, consumer, ARGV[4], pending[1])
        if claimed[1] and claimed[1][2] then
          hand(i, pending[1], claimed[1][2][2], pending[4] + 1)
        elseif not claimed[1] and redis.call('XRANGE', stream, pending[1], pending[1])[1] == nil then
          redis.call('XACK', stream, group, pending[1])
        end
      end
    end
  end
end
for i = 1, n do
  if live[i] and remaining > 0 then
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining, 'STREAMS', KEYS[2 * i], '>')
    if reply then
      for _, entry in ipairs(reply[1][2]) do hand(i, entry[1], entry[2][2], 1) end
    end
  end
end
local newest = {}
for i = 1, n do
  local top = redis.call('XREVRANGE', KEYS[2 * i], '+', '-', 'COUNT', 1)[1]
  if top then
    newest[i] = top[1]
  else
    local lastms = redis.call('HGET', KEYS[2 * i + 1], 'lastms')
    newest[i] = lastms and (tostring(tonumber(lastms) - 1) .. '-18446744073709551615') or '0-0'
  end
end
return {out, newest}
`,
};
