import type { ScriptDefinition } from './scripts.js';

/**
 * Scripts of resumable transfers. A party whose client dropped mid-transfer is not removed at once: it is
 * marked dropped (`d:<ms>` in place of its instance id) and keeps its place in the window, so the data it
 * still needs stays in the stream. A new request may take its place (`resume`) within a grace period; after
 * that `reap` turns a dropped sender into an abort frame and drops a receiver for good. Parties of an
 * instance whose heartbeat key expired are marked dropped by `reap` too (`d:<ms>:<instance>`), and get
 * their place back if that instance turns out alive (a stall, not a death).
 *
 * Times come from Redis (`TIME`), so instances with skewed clocks agree on every grace period.
 */

/** Lua helpers shared by these scripts. */
const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local dead = {}
local function mark_dead(list)
  for id in string.gmatch(list, '%S+') do dead[id] = true end
end
-- Milliseconds since the party dropped, or nil while it is connected. A party marked because its instance's
-- heartbeat lapsed ('d:<ms>:<instance>') is connected again once that instance is alive (a stall, not a death).
local function dropped_for(owner, now)
  if not owner then return nil end
  if string.sub(owner, 1, 2) == 'd:' then
    local ms, instance = string.match(owner, '^d:(%d+):?(.*)$')
    if instance ~= '' and not dead[instance] then return nil end
    return now - tonumber(ms)
  end
  if dead[owner] then return 0 end
  return nil
end
-- The owner to write back: a dead instance's party is marked from now; a revived one gets its instance back.
local function settled_owner(owner, now)
  if not owner then return owner end
  if string.sub(owner, 1, 2) ~= 'd:' then
    if dead[owner] then return 'd:' .. now .. ':' .. owner end
    return owner
  end
  local instance = string.match(owner, '^d:%d+:(.+)$')
  if instance and not dead[instance] then return instance end
  return owner
end
local function field(fields, name)
  for i = 1, #fields, 2 do if fields[i] == name then return fields[i + 1] end end
  return ''
end
-- The committed head of a stream: {kind, seq, offset after the last frame}; kind -1 when it is empty.
local function last_frame(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #last == 0 then return -1, -1, 0 end
  local fields = last[1][2]
  local header = cmsgpack.unpack(field(fields, 'h'))
  return header[1], header[2], header[3] + string.len(field(fields, 'p'))
end
`;

/**
 * A new request takes the place of a party that dropped out of a running transfer. A receiver may also
 * resume once the end frame is written (the transfer may have finished since): every byte is in the stream
 * then, so it is served from the frames retained without a place in the transfer; a receiver that was
 * written everything before its client lost it resumes that way within the grace period after the end.
 * While a receiver of a running transfer is still reading, it may be the one that dropped without its drop
 * being marked yet: taking its place is right then, so the caller asks again and only its last try
 * (`ARGV[11]`) is served without a place.
 * KEYS: [1] meta hash, [2] readers hash, [3] owners hash, [4] data stream
 * ARGV: [1] role 's' | 'r', [2] new party id, [3] its instance id, [4] byte offset asked for, [5] generation,
 *       [6] channel, [7] ids of dead instances (space-separated), [8] ttl ms, [9] resume grace ms,
 *       [10] bytes the sender keeps behind its head at the end (socket buffering plus one window),
 *       [11] '1' on the caller's last try (see above), else '0'
 * Output: {'ok', committed offset, next seq, n}
 *       | {'err', 'no-transfer' | 'ended' | 'sender-connected' | 'no-dropped-receiver'}
 *       | {'err', 'offset', first retained offset, committed offset}
 */
export const resumeScript: ScriptDefinition = {
  numberOfKeys: 4,
  lua: `${PRELUDE}
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'a' then return {'err', 'ended'} end
-- A finished transfer: only receivers, and only while its last frames are retained.
if state == 'f' and (ARGV[1] == 's' or redis.call('EXISTS', KEYS[4]) == 0) then return {'err', 'ended'} end
if (state ~= 's' and state ~= 'f') or redis.call('HGET', KEYS[1], 'gen') ~= ARGV[5] then
  return {'err', 'no-transfer'}
end
mark_dead(ARGV[7])
local kind, seq, head = last_frame(KEYS[4])
-- After an abort frame nobody can resume; after the end frame only receivers can.
if kind == 2 or (kind == 1 and ARGV[1] == 's') then return {'err', 'ended'} end
local offset = tonumber(ARGV[4])
local now = now_ms()
if ARGV[1] == 's' then
  if not dropped_for(redis.call('HGET', KEYS[1], 'sinst'), now) then return {'err', 'sender-connected'} end
  if offset > head then return {'err', 'offset', 0, head} end
  redis.call('HSET', KEYS[1], 'sender', ARGV[2], 'sinst', ARGV[3])
  redis.call('PUBLISH', ARGV[6], 'sresumed')
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
else
  local taken = nil
  if state == 's' then
    local owners = redis.call('HGETALL', KEYS[3])
    for i = 1, #owners, 2 do
      if dropped_for(owners[i + 1], now) then taken = owners[i] break end
    end
  end
  if not taken and kind ~= 1 then return {'err', 'no-dropped-receiver'} end
  if not taken and state == 's' and ARGV[11] ~= '1' then
    for _, position in ipairs(redis.call('HVALS', KEYS[2])) do
      if tonumber(position) <= head then return {'err', 'no-dropped-receiver'} end
    end
  end
  local first = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', 1)
  local from = head
  if #first > 0 then from = cmsgpack.unpack(field(first[1][2], 'h'))[3] end
  -- Served without a place: the sender trims to its retained tail at the end, and nobody holds it back.
  if not taken then from = math.max(from, head - tonumber(ARGV[10])) end
  if offset < from or offset > head then return {'err', 'offset', from, head} end
  if taken then
    redis.call('HDEL', KEYS[2], taken)
    redis.call('HDEL', KEYS[3], taken)
    redis.call('HSET', KEYS[2], ARGV[2], offset)
    redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
    redis.call('PUBLISH', ARGV[6], 'rresumed')
    for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
  elseif state == 'f' then
    -- This reader gets a full grace period to read what is left (a new request is needed to extend it).
    local grace = tonumber(ARGV[9])
    for _, key in ipairs({KEYS[1], KEYS[4]}) do
      if redis.call('PTTL', key) < grace then redis.call('PEXPIRE', key, grace) end
    end
  end
end
return {'ok', head, seq + 1, tonumber(redis.call('HGET', KEYS[1], 'n'))}
`,
};

/**
 * A party's client dropped mid-transfer: mark it dropped, keeping its place for a resume.
 * KEYS: [1] meta hash, [2] owners hash
 * ARGV: [1] role 's' | 'r', [2] party id, [3] generation, [4] channel
 * Output: 1 marked | 0 the party is no longer part of the transfer
 */
export const dropScript: ScriptDefinition = {
  numberOfKeys: 2,
  lua: `${PRELUDE}
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'state') ~= 's' then return 0 end
local mark = 'd:' .. now_ms()
if ARGV[1] == 's' then
  if redis.call('HGET', KEYS[1], 'sender') ~= ARGV[2] then return 0 end
  redis.call('HSET', KEYS[1], 'sinst', mark)
  redis.call('PUBLISH', ARGV[4], 'sdropped')
  return 1
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], mark)
redis.call('PUBLISH', ARGV[4], 'rdropped')
return 1
`,
};

/**
 * Settles parties that dropped and did not come back within the grace period: a sender becomes an abort
 * frame (receivers fail loudly, never a silent truncation), a receiver leaves the transfer (the sender
 * hears of it). Parties of dead instances are marked dropped from now. Any party of the pipe may run it.
 * KEYS: [1] meta hash, [2] readers hash, [3] owners hash, [4] data stream
 * ARGV: [1] generation, [2] ids of dead instances (space-separated), [3] grace ms, [4] channel,
 *       [5] max stream length (entries), [6] ttl ms of an aborted pipe's keys
 * Output: {receivers remaining, 1 if the sender was turned into an abort now else 0} | {-1, 0} (not running)
 */
export const reapScript: ScriptDefinition = {
  numberOfKeys: 4,
  lua: `${PRELUDE}
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 's' then
  return {-1, 0}
end
mark_dead(ARGV[2])
local now = now_ms()
local grace = tonumber(ARGV[3])
local aborted = 0
local sinst = redis.call('HGET', KEYS[1], 'sinst')
local since = dropped_for(sinst, now)
local settled = settled_owner(sinst, now)
if settled ~= sinst then redis.call('HSET', KEYS[1], 'sinst', settled) end
if since and since >= grace then
  local kind, seq, head = last_frame(KEYS[4])
  if kind <= 0 then
    local reason = 'The sender dropped and did not resume within ' .. math.floor(grace / 1000) .. ' s.'
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'h', cmsgpack.pack({2, seq + 1, head, reason}), 'p', '')
    redis.call('PUBLISH', ARGV[4], 'data')
  end
  redis.call('HSET', KEYS[1], 'state', 'a')
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
  aborted = 1
end
local owners = redis.call('HGETALL', KEYS[3])
local removed = 0
for i = 1, #owners, 2 do
  local id, owner = owners[i], owners[i + 1]
  local gone = dropped_for(owner, now)
  if gone and gone >= grace then
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    removed = removed + 1
  else
    local settled = settled_owner(owner, now)
    if settled ~= owner then redis.call('HSET', KEYS[3], id, settled) end
  end
end
local remaining = redis.call('HLEN', KEYS[2])
if removed > 0 then redis.call('PUBLISH', ARGV[4], 'raborted:' .. remaining) end
return {remaining, aborted}
`,
};
