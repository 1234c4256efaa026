/**
 * The Redis broker's atomic steps, as Lua scripts (run with EVALSHA through ioredis `defineCommand`). Each
 * touches the keys of one pipe only (one hash tag), so they run on a Redis Cluster too. Events are published
 * from inside the scripts, so their order matches the order of the state changes.
 *
 * Pipe states: w (waiting for parties), e (established: all present), s (started: headers known),
 * f (finished), a (aborted). A finished or aborted pipe is free for a new transfer on the same path.
 */

export interface ScriptDefinition {
  readonly numberOfKeys: number;
  readonly lua: string;
}

/**
 * Claims the sender slot or one receiver slot.
 * KEYS: [1] meta hash, [2] readers hash, [3] owners hash
 * ARGV: [1] role 's' | 'r', [2] party id, [3] n, [4] ttl ms, [5] generation for a new transfer, [6] channel,
 *       [7] id of the instance serving the party
 * Output: {'ok', receivers present, established 0|1, generation}
 *       | {'err', 'established' | 'sender' | 'full'} | {'err', 'mismatch', n of the pipe}
 */
export const openScript: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'f' or state == 'a' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  state = false
end
local n = tonumber(ARGV[3])
if not state then
  redis.call('HSET', KEYS[1], 'state', 'w', 'n', n, 'gen', ARGV[5])
elseif state ~= 'w' then
  return {'err', 'established'}
else
  local pipeN = tonumber(redis.call('HGET', KEYS[1], 'n'))
  if pipeN ~= n then return {'err', 'mismatch', pipeN} end
end
if ARGV[1] == 's' then
  if redis.call('HEXISTS', KEYS[1], 'sender') == 1 then return {'err', 'sender'} end
  redis.call('HSET', KEYS[1], 'sender', ARGV[2], 'sinst', ARGV[7])
else
  if redis.call('HLEN', KEYS[2]) >= n then return {'err', 'full'} end
  redis.call('HSET', KEYS[2], ARGV[2], '-1')
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[7])
end
local present = redis.call('HLEN', KEYS[2])
local established = 0
if present == n and redis.call('HEXISTS', KEYS[1], 'sender') == 1 then
  redis.call('HSET', KEYS[1], 'state', 'e')
  established = 1
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
redis.call('PUBLISH', ARGV[6], ARGV[1] .. ':' .. present .. ':' .. established)
return {'ok', present, established, redis.call('HGET', KEYS[1], 'gen')}
`,
};

/**
 * A party leaves. Before the start its slot is freed (and an empty pipe deleted); a receiver leaving a
 * running transfer is an abort the sender hears of.
 * KEYS: [1] meta hash, [2] readers hash, [3] owners hash
 * ARGV: [1] role 's' | 'r', [2] party id, [3] generation, [4] channel
 * Output: {'waiting', receivers present} | {'aborted', receivers remaining} | {'gone'}
 */
export const leaveScript: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `
local state = redis.call('HGET', KEYS[1], 'state')
if not state or redis.call('HGET', KEYS[1], 'gen') ~= ARGV[3] then return {'gone'} end
if ARGV[1] == 's' then
  if state ~= 'w' or redis.call('HGET', KEYS[1], 'sender') ~= ARGV[2] then return {'gone'} end
  redis.call('HDEL', KEYS[1], 'sender', 'sinst')
  local present = redis.call('HLEN', KEYS[2])
  if present == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
  redis.call('PUBLISH', ARGV[4], 'sleft:' .. present)
  return {'waiting', present}
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return {'gone'} end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
local present = redis.call('HLEN', KEYS[2])
if state == 'w' then
  if present == 0 and redis.call('HEXISTS', KEYS[1], 'sender') == 0 then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  end
  redis.call('PUBLISH', ARGV[4], 'rleft:' .. present)
  return {'waiting', present}
end
redis.call('PUBLISH', ARGV[4], 'raborted:' .. present)
return {'aborted', present}
`,
};

/**
 * The sender starts the transfer: receivers may now read the headers and the data. The message carries
 * the generation and the headers (`start:<gen>:<msgpack>`), so a waiting receiver answers its client
 * without another round trip to read them.
 * KEYS: [1] meta hash
 * ARGV: [1] generation, [2] encoded headers, [3] ttl ms, [4] channel
 * Output: 1 started | 0 the pipe is no longer established (aborted or gone)
 */
export const startScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'e' then return 0 end
redis.call('HSET', KEYS[1], 'state', 's', 'headers', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'start:' .. ARGV[1] .. ':' .. ARGV[2])
return 1
`,
};

/**
 * Appends one frame and reports the backlog the slowest remaining receiver has, for flow control.
 * KEYS: [1] data stream, [2] readers hash, [3] meta hash, [4] owners hash
 * ARGV: [1] frame header (msgpack), [2] payload ('' for none), [3] offset after this frame (an end frame
 *       counts as one byte), [4] ttl ms
 *       ('' to leave the expiry alone: refreshed every few seconds, not per chunk), [5] channel,
 *       [6] max stream length (entries), [7] new state ('' to keep; 'a' aborted: the path is free again),
 *       [8] ttl ms of an aborted pipe's keys (long enough for its receivers to read the abort frame),
 *       [9] generation, [10] sender id (a sender another one took over from writes nothing)
 * Output: backlog in bytes (head offset minus the slowest receiver's), -1 when no receiver is left,
 *         -2 when the pipe is no longer this sender's
 */
export const appendScript: ScriptDefinition = {
  numberOfKeys: 4,
  lua: `
if redis.call('HGET', KEYS[3], 'gen') ~= ARGV[9] or redis.call('HGET', KEYS[3], 'sender') ~= ARGV[10] then
  return -2
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', 'h', ARGV[1], 'p', ARGV[2])
if ARGV[4] ~= '' then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[3], 'state', ARGV[7])
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
end
redis.call('PUBLISH', ARGV[5], 'data')
local offsets = redis.call('HVALS', KEYS[2])
if #offsets == 0 then return -1 end
local head = tonumber(ARGV[3])
local slowest = head
for _, value in ipairs(offsets) do
  local offset = tonumber(value)
  if offset < 0 then offset = 0 end
  if offset < slowest then slowest = offset end
end
return head - slowest
`,
};

/**
 * The sender is done with a finished transfer (every remaining receiver has been written it all, end frame
 * included): the path is free for a new transfer. The frames left in the stream (the last ones the sender
 * kept) stay for the resume grace period, since being written everything is not having received it: a
 * receiver whose connection dropped with bytes in its socket buffers resumes from them. The state stays as
 * long, so a late party learns that the transfer ended rather than finding nothing.
 * KEYS: [1] meta hash, [2] readers hash, [3] owners hash, [4] data stream
 * ARGV: [1] generation, [2] ttl ms of the state, [3] resume grace ms (0: the frames are deleted at once)
 * Output: 1 | 0 (another transfer owns the path already)
 */
export const finishScript: ScriptDefinition = {
  numberOfKeys: 4,
  lua: `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
local grace = tonumber(ARGV[3])
if grace > 0 then redis.call('PEXPIRE', KEYS[4], grace) else redis.call('DEL', KEYS[4]) end
redis.call('HSET', KEYS[1], 'state', 'f')
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[2]), grace))
return 1
`,
};

/**
 * A receiver reports how far it has read (flow control for the sender, and the sender's "all received").
 * KEYS: [1] readers hash
 * ARGV: [1] receiver id, [2] bytes read, [3] channel
 * Output: 1 recorded | 0 this receiver is no longer part of the pipe
 */
export const progressScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'progress')
return 1
`,
};
