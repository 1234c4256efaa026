// Property-based tests (fast-check) of the code that cuts, joins and frames bytes: whatever the bytes and
// however they are split, what comes out is what went in.
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../src/broker/memory/memory-broker.js';
import { decodeFrame, encodeFrameHeader, type Frame } from '../src/broker/redis/framing.js';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import type { Broker } from '../src/broker/types.js';
import { type ByteSource, skipBytes, sourceOfStream } from '../src/byte-source.js';
import { BodyTooLargeError, limitedUpload } from '../src/byte-source-guards.js';
import { systemClock } from '../src/clock.js';
import { readFirstPart } from '../src/routes/multipart.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

/** `bytes` cut at `cuts` (positions modulo its length, so any list of numbers is a valid split). */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((cut) => (bytes.length === 0 ? 0 : cut % (bytes.length + 1))))].sort(
    (a, b) => a - b,
  );
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const cut of at) {
    pieces.push(bytes.slice(from, cut));
    from = cut;
  }
  pieces.push(bytes.slice(from));
  return pieces;
}

/** Bytes and a way to split them, empty pieces included. */
const splitBytes = fc
  .tuple(fc.uint8Array({ maxLength: 8192 }), fc.array(fc.nat(), { maxLength: 40 }))
  .map(([bytes, cuts]) => ({ bytes, pieces: split(bytes, cuts) }));

function sourceOf(pieces: readonly Uint8Array[]): ByteSource {
  let next = 0;
  return {
    read: async () => (next < pieces.length ? pieces[next++]! : null),
    cancel: () => {},
  };
}

function streamOf(pieces: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < pieces.length) controller.enqueue(pieces[next++]!);
      else controller.close();
    },
  });
}

async function drain(source: ByteSource): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let chunk = await source.read(); chunk !== null; chunk = await source.read()) chunks.push(chunk);
  return new Uint8Array(Buffer.concat(chunks));
}

describe('byte sources', () => {
  it('sourceOfStream passes any split of any bytes through unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(splitBytes, async ({ bytes, pieces }) => {
        expect(await drain(sourceOfStream(streamOf(pieces)))).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it('skipBytes drops exactly the first n bytes of any split', async () => {
    await fc.assert(
      fc.asyncProperty(splitBytes, fc.nat({ max: 10_000 }), async ({ bytes, pieces }, n) => {
        expect(await drain(skipBytes(sourceOf(pieces), n))).toEqual(bytes.slice(Math.min(n, bytes.length)));
      }),
      { numRuns: 300 },
    );
  });

  it('limitedUpload passes a body up to the cap unchanged and fails one past it', async () => {
    await fc.assert(
      fc.asyncProperty(
        splitBytes,
        fc.nat({ max: 9000 }),
        fc.constantFrom(0, 60_000),
        async ({ bytes, pieces }, cap, idleMs) => {
          const limited = limitedUpload(sourceOf(pieces), { clock: systemClock, idleMs, maxBytes: cap });
          if (bytes.length <= cap) expect(await drain(limited)).toEqual(bytes);
          else await expect(drain(limited)).rejects.toBeInstanceOf(BodyTooLargeError);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('multipart', () => {
  it("finds the first part's bytes however the body is split, delimiters cut included", async () => {
    const boundary = fc.stringMatching(/^[A-Za-z0-9'()+_,.-]{1,70}$/);
    await fc.assert(
      fc.asyncProperty(
        boundary,
        fc.uint8Array({ maxLength: 4096 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        async (b, payload, cuts) => {
          const encoder = new TextEncoder();
          const delimiter = encoder.encode(`\r\n--${b}`);
          fc.pre(!Buffer.from(payload).includes(Buffer.from(delimiter)));
          const body = Buffer.concat([
            encoder.encode(`preamble\r\n--${b}\r\nContent-Disposition: form-data; name="f"\r\n\r\n`),
            payload,
            encoder.encode(
              `\r\n--${b}\r\nContent-Disposition: form-data; name="g"\r\n\r\nsecond\r\n--${b}--\r\n`,
            ),
          ]);
          const part = await readFirstPart(sourceOf(split(new Uint8Array(body), cuts)), b);
          expect(await drain(part.body)).toEqual(payload);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('Redis frames', () => {
  const frame: fc.Arbitrary<Frame> = fc.oneof(
    fc.record({
      kind: fc.constant('data' as const),
      seq: fc.nat(),
      offset: fc.maxSafeNat(),
      payload: fc.uint8Array({ maxLength: 512 }),
    }),
    fc.record({
      kind: fc.constant('data' as const),
      seq: fc.nat(),
      offset: fc.maxSafeNat(),
      payload: fc.uint8Array({ maxLength: 512 }),
      sentAt: fc.maxSafeNat(),
    }),
    fc.record({ kind: fc.constant('end' as const), seq: fc.nat(), offset: fc.maxSafeNat() }),
    fc.record({
      kind: fc.constant('abort' as const),
      seq: fc.nat(),
      offset: fc.maxSafeNat(),
      reason: fc.string(),
    }),
  );

  it('decode(encode(frame)) is the frame', () => {
    fc.assert(
      fc.property(frame, (f) => {
        const payload = f.kind === 'data' ? f.payload : new Uint8Array(0);
        expect(decodeFrame(encodeFrameHeader(f), payload)).toEqual(f);
      }),
      { numRuns: 1000 },
    );
  });
});

/** Sends `pieces` through a fresh pipe of `broker` and returns what the receiver read. */
async function through(broker: Broker, pieces: readonly Uint8Array[]): Promise<Uint8Array> {
  const path = `/prop/${randomUUID()}`;
  const never = new AbortController().signal;
  const sender = await broker.openSender({ path, receivers: 1 });
  const receiver = await broker.openReceiver({ path, receivers: 1 });
  await sender.waitForReceivers(never);
  await sender.start({ headers: [] });
  await receiver.waitForStart(never);
  const sending = (async () => {
    for (const piece of pieces) await sender.write(piece);
    await sender.end();
  })();
  const [received] = await Promise.all([drain(receiver), sending]);
  return received;
}

describe('brokers', () => {
  it('the memory broker delivers any split of any bytes unchanged through a small window', async () => {
    const broker = new MemoryBroker({ windowBytes: 16 * 1024, maxPipes: 10, maxWaiting: 10 });
    await fc.assert(
      fc.asyncProperty(splitBytes, async ({ bytes, pieces }) => {
        expect(await through(broker, pieces)).toEqual(bytes);
      }),
      { numRuns: 200 },
    );
    await broker.close();
  });

  describe('the Redis broker', () => {
    let redis: TestRedis;
    let broker: RedisBroker;
    beforeAll(async () => {
      redis = await startTestRedis();
      broker = new RedisBroker({
        target: { url: redis.url },
        keyPrefix: `p${randomUUID().slice(0, 8)}:`,
        windowBytes: 16 * 1024,
        maxPipes: 10,
        maxWaiting: 10,
      });
      await broker.ready();
    });
    afterAll(async () => {
      await broker?.close();
      await redis?.stop();
    });

    it('delivers any split of any bytes unchanged, framed through Redis Streams', async () => {
      await fc.assert(
        fc.asyncProperty(splitBytes, async ({ bytes, pieces }) => {
          expect(await through(broker, pieces)).toEqual(bytes);
        }),
        { numRuns: 40 },
      );
    }, 60_000);
  });
});
