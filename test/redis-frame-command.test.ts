import { randomBytes, randomUUID } from 'node:crypto';
import { Command, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameResendError, FrameXadd } from '../src/broker/redis/frame-command.js';
import { entryField } from '../src/broker/redis/framing.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

let redis: TestRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

/** Pieces of uneven sizes, as a sender's socket hands them over, some of them views into a larger buffer. */
function piecesOf(sizes: number[]): Uint8Array[] {
  return sizes.map((size, i) => (i % 2 ? randomBytes(size + 7).subarray(3, size + 3) : randomBytes(size)));
}

const concat = (pieces: Uint8Array[]) => Buffer.concat(pieces);

describe('redis: a frame appended from its pieces', () => {
  it('lands in the stream byte-exact, header and payload, among other commands of the same tick', async () => {
    const key = `frame:${randomUUID()}`;
    const header = new Uint8Array([0x93, 0, 1, 2]);
    const frames = [piecesOf([65_536, 12, 40_000, 1]), piecesOf([3]), piecesOf([262_144])];
    const ids = await Promise.all(
      frames.flatMap((pieces) => {
        const command = new FrameXadd(key, 1000, header, pieces, concat(pieces).byteLength);
        client.sendCommand(command);
        return [command.promise, client.publish('nobody', 'data')];
      }),
    );
    const entries = await client.xrangeBuffer(key, '-', '+');
    expect(entries.map(([id]) => id.toString())).toEqual([ids[0], ids[2], ids[4]]);
    entries.forEach(([, fields], i) => {
      expect(entryField(fields, 'h').equals(Buffer.from(header))).toBe(true);
      expect(entryField(fields, 'p').equals(concat(frames[i]!))).toBe(true);
    });
  });

  it('fails when ioredis would send it again after a reconnect, and the replies stay in step', async () => {
    const own = new Redis(redis.url);
    try {
      await own.ping();
      const key = `frame:${randomUUID()}`;
      const pieces = piecesOf([1000, 24]);
      const command = new FrameXadd(key, 1000, new Uint8Array([0x93, 0, 0, 0]), pieces, 1024);
      const failed = expect(command.promise).rejects.toBeInstanceOf(FrameResendError);
      own.sendCommand(command);
      // Corked until the next tick: the frame never leaves, and the connection drops with it unanswered.
      own.stream.destroy();
      await failed;
      // Every later command gets its own reply: the resend's stand-in was answered and taken.
      expect(await own.ping()).toBe('PONG');
      expect(await own.xadd(key, '*', 'p', 'after')).toMatch(/^\d+-\d+$/);
      expect(await own.xlen(key)).toBe(1);
    } finally {
      own.disconnect();
    }
  });

  it('is the command ioredis would write, as one Buffer, for a socket that cannot be corked', () => {
    const pieces = piecesOf([100, 2000, 5]);
    const header = new Uint8Array([1, 2, 3]);
    const ours = new FrameXadd('k', 10, header, pieces, concat(pieces).byteLength).toWritable({});
    const reference = new Command('xadd', [
      'k',
      'MAXLEN',
      '~',
      10,
      '*',
      'h',
      Buffer.from(header),
      'p',
      concat(pieces),
    ]);
    expect(Buffer.from(ours).equals(Buffer.from(reference.toWritable({})))).toBe(true);
  });
});
