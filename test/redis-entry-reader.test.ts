import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntryReader, readThrough } from '../src/broker/redis/entry-reader.js';
import { BulkString, RespError, RespReader, type RespValue } from '../src/broker/redis/resp-reader.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

/** Replies as plain values, bulk strings as their text, to compare what the reader made of them. */
function plain(value: RespValue): unknown {
  if (value instanceof BulkString) return `bulk:${value.joined().toString('latin1')}`;
  if (value instanceof RespError) return `error:${value.message}`;
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

const WIRE =
  '+OK\r\n:42\r\n$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n-WRONGPASS invalid\r\n' +
  '*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nh\r\n$2\r\n\r\n\r\n$1\r\np\r\n$10\r\n0123456789\r\n*1\r\n$3\r\nabc\r\n';
const EXPECTED = [
  'OK',
  42,
  null,
  null,
  [],
  'bulk:',
  'error:WRONGPASS invalid',
  [['bulk:1-0', ['bulk:h', 'bulk:\r\n', 'bulk:p', 'bulk:0123456789']], ['bulk:abc']],
];

describe('RespReader', () => {
  it('parses every reply type the same, however the socket cuts the bytes', () => {
    const wire = Buffer.from(WIRE, 'latin1');
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: wire.length - 1 }), { maxLength: 40 }), (cuts) => {
        const replies: unknown[] = [];
        const reader = new RespReader((value) => replies.push(plain(value)));
        let at = 0;
        for (const cut of [...cuts.sort((a, b) => a - b), wire.length]) {
          reader.feed(wire.subarray(at, cut));
          at = cut;
        }
        expect(replies).toEqual(EXPECTED);
      }),
    );
  });

  it('hands a bulk string out as views into the reads, not a copy', () => {
    const reads = [Buffer.from('$6\r\nabc'), Buffer.from('def\r\n')];
    let got: RespValue = null;
    new RespReader((value) => {
      got = value;
    }).feed(reads[0]!);
    expect(got).toBeNull();
    const reader = new RespReader((value) => {
      got = value;
    });
    for (const read of reads) reader.feed(read);
    const pieces = (got as unknown as BulkString).pieces;
    expect(pieces.map((piece) => piece.buffer)).toEqual(reads.map((read) => read.buffer));
  });

  it('refuses a header line without end (not a Redis)', () => {
    const reader = new RespReader(() => {});
    expect(() => {
      for (let i = 0; i < 20; i++) reader.feed(Buffer.alloc(4096, 0x2b));
    }).toThrow(RespError);
  });
});

describe('EntryReader', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('fails the reads in flight when Redis goes, then connects again', async () => {
    const key = `entries:${randomUUID()}`;
    const reader = new EntryReader(redis.url);
    try {
      await expect(reader.xrange(key, '-', 1)).resolves.toEqual([]);
      await redis.stop();
      await expect(reader.xrange(key, '-', 1)).rejects.toThrow(/Redis connection/);
      await redis.start();
      await expect(reader.xrange(key, '-', 1)).resolves.toEqual([]);
    } finally {
      reader.close();
    }
  });

  it('reads what ioredis reads (password, database, payloads that span reads), byte-exact', async () => {
    const admin = new Redis(redis.url);
    await admin.config('SET', 'requirepass', 'pw');
    admin.disconnect();
    const url = `redis://:pw@127.0.0.1:${redis.port}/3`;
    const client = new Redis(url);
    const reader = new EntryReader(url);
    const wrong = new EntryReader(`redis://:nope@127.0.0.1:${redis.port}`);
    try {
      await expect(wrong.xrange('any', '-', 1)).rejects.toThrow(/WRONGPASS|invalid/);
      const key = `entries:${randomUUID()}`;
      const payloads = [randomBytes(300_000), Buffer.alloc(0), randomBytes(5), randomBytes(70_000)];
      for (const [i, payload] of payloads.entries()) {
        await client.xadd(key, '*', 'h', Buffer.from([i]), 'p', payload);
      }
      const direct = await reader.xrange(key, '-', 10);
      const through = await readThrough(client)(key, '-', 10);
      expect(direct.map((entry) => entry.id)).toEqual(through.map((entry) => entry.id));
      direct.forEach((entry, i) => {
        expect(entry.header.equals(Buffer.from([i]))).toBe(true);
        expect(Buffer.concat(entry.payload).equals(payloads[i]!)).toBe(true);
      });
      expect(direct[0]!.payload.length).toBeGreaterThan(1);
      const after = await reader.xrange(key, `(${direct[1]!.id}`, 1);
      expect(after.map((entry) => entry.id)).toEqual([direct[2]!.id]);
    } finally {
      wrong.close();
      reader.close();
      client.disconnect();
    }
  });
});
