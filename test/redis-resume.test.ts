import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  NothingToResumeError,
  ReceiversGoneError,
  ResumeOffsetError,
  SenderAbortedError,
} from '../src/broker/errors.js';
import { RedisBroker, type RedisBrokerOptions } from '../src/broker/redis/redis-broker.js';
import type { ReceiverSession, SenderEvent, SenderSession } from '../src/broker/types.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const never = new AbortController().signal;
const WINDOW = 64 * 1024;

let redis: TestRedis;
let cluster: TestCluster;
let client: Redis;
const brokers: RedisBroker[] = [];

beforeAll(async () => {
  [redis, cluster] = await Promise.all([startTestRedis(), startTestCluster()]);
  client = new Redis(redis.url);
});
afterAll(async () => {
  client?.disconnect();
  await Promise.all([redis?.stop(), cluster?.stop()]);
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((broker) => broker.close()));
});

type Deployment = 'one Redis' | 'Redis Cluster';
let deployment: Deployment = 'one Redis';

/** Brokers of one test share a key prefix: they are instances of one deployment. */
async function instances(count: number, options: Partial<RedisBrokerOptions> = {}): Promise<RedisBroker[]> {
  const keyPrefix = `t${randomUUID().slice(0, 8)}:`;
  const made: RedisBroker[] = [];
  for (let i = 0; i < count; i++) {
    const broker = new RedisBroker({
      target: deployment === 'one Redis' ? { url: redis.url } : { cluster: cluster.seeds },
      keyPrefix,
      windowBytes: WINDOW,
      maxPipes: 100,
      maxWaiting: 100,
      pollMs: 50,
      resumeGraceMs: 2000,
      socketBufferBytes: WINDOW,
      instanceTtlMs: 600,
      endedTtlMs: 300,
      ...options,
    });
    await broker.ready();
    made.push(broker);
  }
  brokers.push(...made);
  return made;
}

async function started(
  sender: SenderSession,
  receivers: ReceiverSession[],
  headers: Array<[string, string]> = [],
): Promise<void> {
  await sender.waitForReceivers(never);
  await sender.start({ headers });
  await Promise.all(receivers.map((receiver) => receiver.waitForStart(never)));
}

/** Reads until `count` bytes arrived (or the end); returns them. */
async function readBytes(session: ReceiverSession, count = Number.POSITIVE_INFINITY): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (total < count) {
    const chunk = await session.read();
    if (chunk === null) break;
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  return Buffer.concat(chunks);
}

/** Writes `body` in chunks of `size`. */
async function writeAll(sender: SenderSession, body: Uint8Array, size = 16 * 1024): Promise<void> {
  for (let at = 0; at < body.byteLength; at += size) await sender.write(body.subarray(at, at + size));
}

async function until(condition: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.each<Deployment>(['one Redis', 'Redis Cluster'])(
  'redis broker on %s: resuming transfers',
  (target) => {
    beforeAll(() => {
      deployment = target;
    });

    it('a receiver that drops resumes through another instance from any retained offset, byte-exact', async () => {
      const [a, b] = await instances(2);
      const body = randomBytes(6 * WINDOW);
      const sender = await a!.openSender({ path: '/r1', receivers: 1, resumable: true });
      const first = await a!.openReceiver({ path: '/r1', receivers: 1, resumable: true });
      await started(sender, [first!], [['Content-Type', 'application/x-test']]);
      const sending = writeAll(sender, body).then(() => sender.end());

      const got = await readBytes(first!, 2 * WINDOW);
      first!.cancel();
      // The client kept fewer bytes than the broker handed out (some were in socket buffers when it died).
      const kept = 2 * WINDOW - 5000;
      const resumed = await b!.openReceiver({ path: '/r1', receivers: 1, resumable: true, resumeAt: kept });
      const meta = await resumed.waitForStart(never);
      expect(meta.headers).toEqual([['Content-Type', 'application/x-test']]);
      const rest = await readBytes(resumed);
      await sending;
      expect(Buffer.concat([got.subarray(0, kept), rest]).equals(body)).toBe(true);
    });

    it('a receiver that does not come back within the grace period is dropped: the sender is told', async () => {
      const [a] = await instances(1, { resumeGraceMs: 300 });
      const events: SenderEvent[] = [];
      const sender = await a!.openSender({
        path: '/r2',
        receivers: 1,
        resumable: true,
        onEvent: (e) => events.push(e),
      });
      const receiver = await a!.openReceiver({ path: '/r2', receivers: 1, resumable: true });
      await started(sender, [receiver]);
      await sender.write(new Uint8Array(1000));
      await readBytes(receiver, 1000);
      receiver.cancel();
      const startedAt = Date.now();
      await expect(writeAll(sender, randomBytes(8 * WINDOW))).rejects.toBeInstanceOf(ReceiversGoneError);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
      // The transcript says so once, whether the Pub/Sub message or the failed write came first.
      expect(events.filter((e) => e.type === 'receiver-aborted')).toEqual([
        { type: 'receiver-aborted', remaining: 0, receivers: 1 },
      ]);
    });

    it('a sender that drops resumes through another instance; receivers see one continuous stream', async () => {
      const [a, b] = await instances(2);
      const body = randomBytes(5 * WINDOW + 123);
      const sender = await a!.openSender({ path: '/s1', receivers: 2, resumable: true });
      const r1 = await a!.openReceiver({ path: '/s1', receivers: 2, resumable: true });
      const r2 = await b!.openReceiver({ path: '/s1', receivers: 2, resumable: true });
      await started(sender, [r1, r2]);
      const reading = Promise.all([readBytes(r1), readBytes(r2)]);
      const cut = 2 * WINDOW + 777;
      await writeAll(sender, body.subarray(0, cut), 10_000);
      sender.interrupt('upload broke');

      await until(
        async () => (await b!.inspect('/s1'))?.senderDropped === true,
        'the sender counts as dropped',
      );
      const status = await b!.inspect('/s1');
      expect(status).toMatchObject({ state: 'transferring', committedOffset: cut });
      // The new upload starts a little before the committed offset: the overlap is skipped, not repeated.
      const again = await b!.openSender({ path: '/s1', receivers: 1, resumable: true, resumeAt: cut - 100 });
      expect(again.resumedAt).toBe(cut);
      await writeAll(again, body.subarray(cut));
      await again.end();
      const [got1, got2] = await reading;
      expect(got1.equals(body)).toBe(true);
      expect(got2.equals(body)).toBe(true);
    });

    it('interrupt resolves once every byte written is committed and the drop is recorded (a piece ends)', async () => {
      const [a, b] = await instances(2);
      const body = randomBytes(WINDOW + 4321);
      const sender = await a!.openSender({ path: '/piece', receivers: 1, resumable: true });
      const receiver = await b!.openReceiver({ path: '/piece', receivers: 1, resumable: true });
      await started(sender, [receiver]);
      const reading = readBytes(receiver);
      // Small writes: the last ones are still joined into a frame not yet sent when the piece ends.
      await writeAll(sender, body, 1000);
      await sender.interrupt('a piece ended');
      // Asked at once, on another instance: no wait for the drop to land.
      expect(await b!.inspect('/piece')).toMatchObject({
        state: 'transferring',
        committedOffset: body.byteLength,
        senderDropped: true,
      });
      const again = await b!.openSender({ path: '/piece', receivers: 1, resumeAt: body.byteLength });
      expect(again.resumedAt).toBe(body.byteLength);
      await again.end();
      expect((await reading).equals(body)).toBe(true);
    });

    it('a receiver and a sender resume exactly at the committed offset (the usual case: nothing was lost)', async () => {
      const [a, b] = await instances(2);
      const body = randomBytes(3 * WINDOW);
      const sender = await a!.openSender({ path: '/head', receivers: 1, resumable: true });
      const receiver = await a!.openReceiver({ path: '/head', receivers: 1, resumable: true });
      await started(sender, [receiver]);
      const first = WINDOW + 321;
      // The receiver has every committed byte when it drops: it asks for the committed offset itself.
      const [, got] = await Promise.all([
        writeAll(sender, body.subarray(0, first)),
        readBytes(receiver, first),
      ]);
      expect(got.byteLength).toBe(first);
      receiver.cancel();
      const resumed = await b!.openReceiver({ path: '/head', receivers: 1, resumeAt: first });
      await resumed.waitForStart(never);
      const reading = readBytes(resumed);
      // The sender drops too, after a little more, and comes back at exactly what Redis committed.
      const second = 2 * WINDOW + 5;
      await writeAll(sender, body.subarray(first, second));
      sender.interrupt('upload broke');
      await until(async () => (await b!.inspect('/head'))?.senderDropped === true, 'the sender dropped');
      expect(await b!.inspect('/head')).toMatchObject({ committedOffset: second });
      const again = await b!.openSender({ path: '/head', receivers: 1, resumeAt: second });
      expect(again.resumedAt).toBe(second);
      await writeAll(again, body.subarray(second));
      await again.end();
      const rest = await reading;
      expect(Buffer.concat([got, rest]).equals(body)).toBe(true);
    });

    it('a sender that does not come back within the grace period becomes an abort frame', async () => {
      const [a, b] = await instances(2, { resumeGraceMs: 300 });
      const sender = await a!.openSender({ path: '/s2', receivers: 1, resumable: true });
      const receiver = await b!.openReceiver({ path: '/s2', receivers: 1, resumable: true });
      await started(sender, [receiver]);
      await sender.write(new Uint8Array(5000));
      sender.interrupt();
      await expect(readBytes(receiver)).rejects.toThrow(/did not resume/);
      await expect(readBytes(receiver)).rejects.toBeInstanceOf(SenderAbortedError);
      expect((await a!.inspect('/s2'))?.state).toBe('ended');
    });

    it('refuses resumes that cannot be served, with the reason', async () => {
      const [a] = await instances(1);
      await expect(
        a!.openReceiver({ path: '/none', receivers: 1, resumable: true, resumeAt: 10 }),
      ).rejects.toMatchObject({
        reason: 'no-transfer',
      });
      const sender = await a!.openSender({ path: '/s3', receivers: 1, resumable: true });
      const receiver = await a!.openReceiver({ path: '/s3', receivers: 1, resumable: true });
      await started(sender, [receiver]);
      await sender.write(new Uint8Array(3000));
      // Nobody dropped: neither role can be taken over.
      await expect(
        a!.openSender({ path: '/s3', receivers: 1, resumable: true, resumeAt: 0 }),
      ).rejects.toMatchObject({
        reason: 'sender-connected',
      });
      await expect(
        a!.openReceiver({ path: '/s3', receivers: 1, resumable: true, resumeAt: 0 }),
      ).rejects.toBeInstanceOf(NothingToResumeError);
      await readBytes(receiver, 3000);
      receiver.cancel();
      // Beyond what the sender has sent.
      const beyond = a!.openReceiver({ path: '/s3', receivers: 1, resumable: true, resumeAt: 3001 });
      await expect(beyond).rejects.toBeInstanceOf(ResumeOffsetError);
      await expect(beyond).rejects.toMatchObject({ from: 0, to: 3000 });
      sender.interrupt();
      await until(async () => (await a!.inspect('/s3'))?.senderDropped === true, 'the sender dropped');
      await expect(
        a!.openSender({ path: '/s3', receivers: 1, resumable: true, resumeAt: 4000 }),
      ).rejects.toMatchObject({
        to: 3000,
      });
    });

    it('an offset the window has trimmed is refused with what can be served, never served with a hole', async () => {
      const [a] = await instances(1);
      const sender = await a!.openSender({ path: '/t1', receivers: 1, resumable: true });
      const receiver = await a!.openReceiver({ path: '/t1', receivers: 1, resumable: true });
      await started(sender, [receiver]);
      const body = randomBytes(12 * WINDOW);
      const sending = writeAll(sender, body).then(() => sender.end());
      const got = await readBytes(receiver, 8 * WINDOW);
      receiver.cancel();
      // Frames more than a window behind the receiver's position are gone: byte 1 cannot be served.
      const early = a!.openReceiver({ path: '/t1', receivers: 1, resumable: true, resumeAt: 1 });
      await expect(early).rejects.toBeInstanceOf(ResumeOffsetError);
      const { from } = (await early.catch((error: ResumeOffsetError) => error)) as ResumeOffsetError;
      expect(from).toBeGreaterThan(1);
      expect(from).toBeLessThanOrEqual(got.byteLength);
      // The last window before the receiver's position stays (the sender may trim up to it meanwhile).
      const at = got.byteLength - 1000;
      const resumed = await a!.openReceiver({ path: '/t1', receivers: 1, resumable: true, resumeAt: at });
      await resumed.waitForStart(never);
      const rest = await readBytes(resumed);
      await sending;
      expect(Buffer.concat([got.subarray(0, at), rest]).equals(body)).toBe(true);
    });
  },
);

describe('redis broker: review regressions', () => {
  beforeAll(() => {
    deployment = 'one Redis';
  });

  it('a receiver that leaves after the end frame arrived but before reading it all counts as dropped', async () => {
    const [a] = await instances(1, { resumeGraceMs: 300 });
    const sender = await a!.openSender({ path: '/rr1', receivers: 1, resumable: true });
    const receiver = await a!.openReceiver({ path: '/rr1', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    // Four frames (one per turn of the event loop; chunks written in one turn are joined into one frame).
    for (let i = 0; i < 4; i++) {
      await sender.write(new Uint8Array(1000).fill(i));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const ending = sender.end();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await receiver.read()).not.toBeNull();
    receiver.cancel();
    // The sender is not left waiting for a reader that will never finish: it hears of it after the grace.
    await expect(ending).rejects.toBeInstanceOf(ReceiversGoneError);
    await until(async () => a!.stats().pipes === 0, 'the instance forgot the pipe');
  });

  it('parties of an instance whose heartbeat lapsed get their place back when it beats again', async () => {
    const [a, b] = await instances(2, { resumeGraceMs: 1500 });
    const sender = await a!.openSender({ path: '/rr2', receivers: 1, resumable: true });
    const receiver = await b!.openReceiver({ path: '/rr2', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    const heartbeat = (a as unknown as { heartbeat: { stop(): Promise<void>; start(): Promise<void> } })
      .heartbeat;
    await heartbeat.stop();
    // B's receiver, starved, finds A dead and marks its sender dropped.
    const reading = readBytes(receiver);
    await until(
      async () => (await b!.inspect('/rr2'))?.senderDropped === true,
      'the sender counts as dropped',
    );
    await heartbeat.start();
    await until(async () => (await b!.inspect('/rr2'))?.senderDropped === false, 'the sender is back');
    await new Promise((resolve) => setTimeout(resolve, 1600));
    await sender.write(new Uint8Array(5000).fill(7));
    await sender.end();
    expect((await reading).byteLength).toBe(5000);
  });

  it('a sender taken over writes nothing more: its late abort does not end the resumed transfer', async () => {
    const [a, b] = await instances(2, { resumeGraceMs: 5000 });
    const first = await a!.openSender({ path: '/rr3', receivers: 1, resumable: true });
    const receiver = await b!.openReceiver({ path: '/rr3', receivers: 1, resumable: true });
    await started(first, [receiver]);
    await first.write(new Uint8Array(1000).fill(1));
    // A's heartbeat lapses (a long stall): B takes its sender for dead and a new sender takes over.
    const heartbeat = (a as unknown as { heartbeat: { stop(): Promise<void> } }).heartbeat;
    await heartbeat.stop();
    const reading = readBytes(receiver);
    await until(
      async () => (await b!.inspect('/rr3'))?.senderDropped === true,
      'the sender counts as dropped',
    );
    const second = await b!.openSender({ path: '/rr3', receivers: 1, resumable: true, resumeAt: 1000 });
    // The stalled session wakes up and gives up: its abort must not reach the pipe any more.
    first.abort('late abort from the old session');
    await new Promise((resolve) => setTimeout(resolve, 200));
    await second.write(new Uint8Array(1000).fill(2));
    await second.end();
    const got = await reading;
    expect(got.byteLength).toBe(2000);
    expect(got[1500]).toBe(2);
  });
});

describe('redis broker: parties of a dead instance', () => {
  beforeAll(() => {
    deployment = 'one Redis';
  });

  it('a waiting sender or receiver whose instance died does not hold its slot until the keys expire', async () => {
    const [a, b] = await instances(2, { instanceTtlMs: 300 });
    await a!.openSender({ path: '/dead/s', receivers: 1, resumable: true });
    await a!.openReceiver({ path: '/dead/r', receivers: 1, resumable: true });
    await expect(b!.openSender({ path: '/dead/s', receivers: 1, resumable: true })).rejects.toMatchObject({
      reason: 'sender-connected',
    });
    // A dies: its heartbeat key goes (a crash leaves no goodbye; its parties stay in Redis).
    await (a as unknown as { heartbeat: { stop(): Promise<void> } }).heartbeat.stop();
    const sender = await b!.openSender({ path: '/dead/s', receivers: 1, resumable: true });
    const receiver = await b!.openReceiver({ path: '/dead/s', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    const secondReceiver = await b!.openReceiver({ path: '/dead/r', receivers: 1, resumable: true });
    secondReceiver.cancel();
    sender.release();
    receiver.cancel();
  });
});

describe('redis broker: who gets the grace period (issue 11, item 5)', () => {
  beforeAll(() => {
    deployment = 'one Redis';
  });

  it('a sender that did not declare it can resume is aborted at once: its receivers fail without the wait', async () => {
    const [a, b] = await instances(2, { resumeGraceMs: 20_000 });
    const sender = await a!.openSender({ path: '/p5s', receivers: 1 });
    const receiver = await b!.openReceiver({ path: '/p5s', receivers: 1 });
    await started(sender, [receiver]);
    await sender.write(new Uint8Array(5000).fill(3));
    expect((await readBytes(receiver, 5000)).byteLength).toBe(5000);
    const cutAt = Date.now();
    sender.interrupt('upload broke');
    await expect(readBytes(receiver)).rejects.toBeInstanceOf(SenderAbortedError);
    // Well inside the grace period: nothing waited for a sender that cannot come back.
    expect(Date.now() - cutAt).toBeLessThan(10_000);
    await expect(b!.openSender({ path: '/p5s', receivers: 1, resumeAt: 5000 })).rejects.toBeInstanceOf(
      NothingToResumeError,
    );
  });

  it('a receiver that did not declare it can resume leaves at once: the sender is told, the path is free', async () => {
    const [a, b] = await instances(2, { resumeGraceMs: 20_000 });
    const events: SenderEvent[] = [];
    const sender = await a!.openSender({ path: '/p5r', receivers: 1, onEvent: (e) => events.push(e) });
    const receiver = await b!.openReceiver({ path: '/p5r', receivers: 1 });
    await started(sender, [receiver]);
    await sender.write(new Uint8Array(1000));
    await readBytes(receiver, 1000);
    const cutAt = Date.now();
    receiver.cancel();
    await expect(writeAll(sender, randomBytes(8 * WINDOW))).rejects.toBeInstanceOf(ReceiversGoneError);
    expect(Date.now() - cutAt).toBeLessThan(10_000);
    await until(async () => events.some((e) => e.type === 'receiver-aborted'), 'the sender is told');
    // The pipe whose receivers all left is over: the path takes a new transfer at once, on any instance.
    await until(async () => a!.stats().pipes === 0, 'the instance forgot the pipe');
    const next = await b!.openSender({ path: '/p5r', receivers: 1 });
    next.release();
  });
});

describe('redis broker: frames kept behind what was written (issue 11, item 4)', () => {
  beforeAll(() => {
    deployment = 'one Redis';
  });

  it('a receiver written everything resumes after the end from the frames kept for the grace period', async () => {
    const grace = 1500;
    const [a, b] = await instances(2, { resumeGraceMs: grace });
    const prefix = (a as unknown as { prefix: string }).prefix;
    const body = randomBytes(10 * WINDOW + 77);
    const sender = await a!.openSender({ path: '/e1', receivers: 1 });
    const receiver = await a!.openReceiver({ path: '/e1', receivers: 1 });
    await started(sender, [receiver], [['Content-Length', String(body.byteLength)]]);
    const sending = writeAll(sender, body).then(() => sender.end());
    // A plain receiver: it reads everything (its socket took it all), then its client is gone.
    expect((await readBytes(receiver)).equals(body)).toBe(true);
    await sending;
    expect((await a!.inspect('/e1'))?.state).toBe('ended');
    const dataKey = (await client.keys(`${prefix}{/e1}:d:*`))[0]!;
    expect(await client.pttl(dataKey)).toBeGreaterThan(0);
    expect(await client.pttl(dataKey)).toBeLessThanOrEqual(grace);

    // What the client lost in its socket buffers (here: a whole socket buffer plus a window) is served.
    const kept = body.byteLength - 2 * WINDOW;
    const resumed = await b!.openReceiver({ path: '/e1', receivers: 1, resumeAt: kept });
    expect((await resumed.waitForStart(never)).headers).toEqual([
      ['Content-Length', String(body.byteLength)],
    ]);
    expect((await readBytes(resumed)).equals(body.subarray(kept))).toBe(true);
    // It can be asked again (another drop), and from anywhere in the tail; not before it.
    const again = await b!.openReceiver({ path: '/e1', receivers: 1, resumeAt: body.byteLength - 10 });
    expect((await readBytes(again)).equals(body.subarray(body.byteLength - 10))).toBe(true);
    const early = b!.openReceiver({ path: '/e1', receivers: 1, resumeAt: kept - 2 * WINDOW });
    await expect(early).rejects.toBeInstanceOf(ResumeOffsetError);
    await expect(early).rejects.toMatchObject({ to: body.byteLength });
    // A sender cannot resume a finished transfer.
    await expect(b!.openSender({ path: '/e1', receivers: 1, resumeAt: 0 })).rejects.toMatchObject({
      reason: 'ended',
    });
    // After the grace period the frames are deleted: nothing is left to resume.
    await until(
      async () => (await client.exists(dataKey)) === 0,
      'the retained frames expired',
      2 * grace + 2000,
    );
    await expect(b!.openReceiver({ path: '/e1', receivers: 1, resumeAt: kept })).rejects.toBeInstanceOf(
      NothingToResumeError,
    );
  });

  it('a resume that comes before the drop is marked takes the dropped place, not a read of the tail', async () => {
    const [a, b] = await instances(2, { resumeGraceMs: 10_000 });
    // Within one window: the sender writes it all, end frame included, before the receiver reads.
    const body = randomBytes((3 * WINDOW) / 4);
    const sender = await a!.openSender({ path: '/e3', receivers: 1 });
    const receiver = await a!.openReceiver({ path: '/e3', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    await writeAll(sender, body);
    // The end frame is written; the receiver is mid-body and its drop reaches Redis only after the resume.
    const ending = sender.end();
    const got = await readBytes(receiver, WINDOW / 4);
    const resuming = b!.openReceiver({ path: '/e3', receivers: 1, resumeAt: got.byteLength });
    await new Promise((resolve) => setTimeout(resolve, 300));
    receiver.cancel();
    const resumed = await resuming;
    const startedAt = Date.now();
    expect(Buffer.concat([got, await readBytes(resumed)]).equals(body)).toBe(true);
    // The sender finishes with the reader that took the place, instead of waiting the grace period out for
    // a dropped receiver nobody took over.
    await ending;
    expect(Date.now() - startedAt).toBeLessThan(5000);
  });

  it('mid-transfer, frames stay socketBufferBytes plus a window behind the position a receiver reported', async () => {
    const socketBufferBytes = 3 * WINDOW;
    const [a, b] = await instances(2, { socketBufferBytes });
    const body = randomBytes(20 * WINDOW);
    const sender = await a!.openSender({ path: '/e2', receivers: 1 });
    const receiver = await a!.openReceiver({ path: '/e2', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    const sending = writeAll(sender, body).then(() => sender.end());
    const got = await readBytes(receiver, 12 * WINDOW);
    receiver.cancel();
    // The client received less than was written to it: everything down to the retained margin is served.
    const at = got.byteLength - socketBufferBytes - WINDOW + 1;
    const resumed = await b!.openReceiver({ path: '/e2', receivers: 1, resumeAt: at });
    await resumed.waitForStart(never);
    const rest = await readBytes(resumed);
    await sending;
    expect(Buffer.concat([got.subarray(0, at), rest]).equals(body)).toBe(true);
  });
});

describe('redis broker: memory and keys', () => {
  beforeAll(() => {
    deployment = 'one Redis';
  });

  it('a slow receiver keeps Redis at about 2.25 windows plus socketBufferBytes per pipe; after the end less', async () => {
    // socketBufferBytes is one window here (instances()): the bound is about 3.25 windows.
    const [a] = await instances(1, { resumeGraceMs: 2000 });
    const sender = await a!.openSender({ path: '/m1', receivers: 1, resumable: true });
    const receiver = await a!.openReceiver({ path: '/m1', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    const body = randomBytes(40 * WINDOW);
    const sending = writeAll(sender, body).then(() => sender.end());
    const dataKey = async () => (await client.keys(`${(a as unknown as { prefix: string }).prefix}*:d:*`))[0];
    let largest = 0;
    const chunks: Uint8Array[] = [];
    for (let total = 0; total < body.byteLength; ) {
      const chunk = await receiver.read();
      if (chunk === null) break;
      chunks.push(chunk);
      total += chunk.byteLength;
      await new Promise((resolve) => setTimeout(resolve, 1));
      const key = await dataKey();
      if (key) largest = Math.max(largest, Number(await client.memory('USAGE', key, 'SAMPLES', '0')));
    }
    expect(await receiver.read()).toBeNull();
    await sending;
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    // Unread (up to a window, measured a quarter window late), in flight, the retained socket buffering and
    // window, and the allocator's rounding of each entry: a few windows, where an untrimmed stream would
    // hold all 40.
    expect(largest).toBeGreaterThan(2 * WINDOW);
    expect(largest).toBeLessThan(5 * WINDOW);
    // After the end: the retained tail (socket buffering and a window) and a frame, for the grace period.
    const after = Number(await client.memory('USAGE', (await dataKey())!, 'SAMPLES', '0'));
    expect(after).toBeLessThan(3 * WINDOW);
  });

  it('finished and aborted pipes leave no keys behind', async () => {
    const [a] = await instances(1, { resumeGraceMs: 0 });
    const prefix = (a as unknown as { prefix: string }).prefix;
    const pipeKeys = async () => (await client.keys(`${prefix}{*`)).sort();

    const sender = await a!.openSender({ path: '/k1', receivers: 1, resumable: true });
    const receiver = await a!.openReceiver({ path: '/k1', receivers: 1, resumable: true });
    await started(sender, [receiver]);
    await sender.write(new Uint8Array(10_000));
    const ending = sender.end();
    await readBytes(receiver);
    await ending;
    // The data is deleted at once; the state stays briefly so a late party learns the transfer ended.
    expect(await pipeKeys()).toEqual([`${prefix}{/k1}:m`]);

    const aborting = await a!.openSender({ path: '/k2', receivers: 1, resumable: true });
    const left = await a!.openReceiver({ path: '/k2', receivers: 1, resumable: true });
    await started(aborting, [left]);
    await aborting.write(new Uint8Array(100));
    aborting.abort();
    await expect(readBytes(left)).rejects.toBeInstanceOf(SenderAbortedError);

    const waiting = await a!.openReceiver({ path: '/k3', receivers: 1, resumable: true });
    waiting.cancel();
    await until(async () => (await pipeKeys()).length === 0, 'every pipe key expired', 3000);
  });
});
