import { afterEach, describe, expect, it } from 'vitest';
import {
  BrokerClosedError,
  CapacityError,
  PipeBusyError,
  ReceiverCountMismatchError,
  ReceiversGoneError,
  SenderAbortedError,
} from '../src/broker/errors.js';
import type { Broker, ReceiverSession, SenderEvent } from '../src/broker/types.js';

export interface BrokerLimits {
  readonly windowBytes: number;
  readonly maxPipes: number;
  readonly maxWaiting: number;
}

export interface BrokerContractOptions {
  readonly name: string;
  /** A fresh, ready broker; the suite closes it after each test. */
  readonly newBroker: (limits: BrokerLimits) => Promise<Broker>;
}

const DEFAULT_LIMITS: BrokerLimits = { windowBytes: 64 * 1024, maxPipes: 100, maxWaiting: 100 };
const never = new AbortController().signal;

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (chunks: Uint8Array[]) => new TextDecoder().decode(Buffer.concat(chunks));

async function readAll(session: ReceiverSession): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for (let chunk = await session.read(); chunk !== null; chunk = await session.read()) chunks.push(chunk);
  return chunks;
}

/**
 * Waits until `condition` holds (bounded): a distributed backend tells its parties asynchronously, so what a
 * party does is seen by the others a little later.
 */
async function eventually(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!condition()) throw new Error(`timed out waiting until ${what}`);
}

/** Whether `promise` is still pending after the event loop has turned a few times. */
export async function isPending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  return !settled;
}

/**
 * The pipe contract, run against every backend: the memory broker now, the Redis broker later. Everything a
 * route relies on is pinned here, in pipe terms.
 */
export function runBrokerTests({ name, newBroker }: BrokerContractOptions): void {
  describe(`broker contract: ${name}`, () => {
    const open: Broker[] = [];
    const make = async (limits: Partial<BrokerLimits> = {}) => {
      const broker = await newBroker({ ...DEFAULT_LIMITS, ...limits });
      open.push(broker);
      return broker;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((b) => b.close()));
    });

    it('sender first: the receiver gets the meta and every byte in order', async () => {
      const broker = await make();
      const sender = await broker.openSender({ path: '/a', receivers: 1 });
      expect(sender.connectedAtOpen).toBe(0);
      const receiver = await broker.openReceiver({ path: '/a', receivers: 1 });
      await sender.waitForReceivers(never);
      await sender.start({ headers: [['Content-Type', 'text/plain']] });
      const meta = await receiver.waitForStart(never);
      expect(meta.headers).toEqual([['Content-Type', 'text/plain']]);
      const reading = readAll(receiver);
      await sender.write(bytes('hello '));
      await sender.write(bytes('world'));
      await sender.end();
      expect(text(await reading)).toBe('hello world');
    });

    it('receiver first: the sender sees it connected at open', async () => {
      const broker = await make();
      const receiver = await broker.openReceiver({ path: '/b', receivers: 1 });
      const sender = await broker.openSender({ path: '/b', receivers: 1 });
      expect(sender.connectedAtOpen).toBe(1);
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await receiver.waitForStart(never);
      const reading = readAll(receiver);
      await sender.write(bytes('x'));
      await sender.end();
      expect(text(await reading)).toBe('x');
    });

    it('n=3: the transfer starts only when all three are present, and each gets the whole body', async () => {
      const broker = await make();
      const events: SenderEvent[] = [];
      const sender = await broker.openSender({ path: '/n3', receivers: 3, onEvent: (e) => events.push(e) });
      const receivers = [await broker.openReceiver({ path: '/n3', receivers: 3 })];
      receivers.push(await broker.openReceiver({ path: '/n3', receivers: 3 }));
      const ready = sender.waitForReceivers(never);
      expect(await isPending(ready)).toBe(true);
      receivers.push(await broker.openReceiver({ path: '/n3', receivers: 3 }));
      await ready;
      expect(
        events
          .filter((e) => e.type === 'receiver-connected')
          .map((e) => (e as { connected: number }).connected),
      ).toEqual([1, 2, 3]);
      await sender.start({ headers: [] });
      const readings = receivers.map(async (r) => {
        await r.waitForStart(never);
        return text(await readAll(r));
      });
      for (let i = 0; i < 50; i++) await sender.write(bytes(`${i},`));
      await sender.end();
      const expected = Array.from({ length: 50 }, (_, i) => `${i},`).join('');
      expect(await Promise.all(readings)).toEqual([expected, expected, expected]);
    });

    it('refuses a second sender, an extra receiver and a disagreeing n', async () => {
      const broker = await make();
      await broker.openSender({ path: '/busy', receivers: 2 });
      await expect(broker.openSender({ path: '/busy', receivers: 2 })).rejects.toBeInstanceOf(PipeBusyError);
      await expect(broker.openReceiver({ path: '/busy', receivers: 3 })).rejects.toBeInstanceOf(
        ReceiverCountMismatchError,
      );
      await broker.openReceiver({ path: '/busy', receivers: 2 });
      await broker.openReceiver({ path: '/busy', receivers: 2 });
      const late = broker.openReceiver({ path: '/busy', receivers: 2 });
      await expect(late).rejects.toBeInstanceOf(PipeBusyError);
      await expect(late).rejects.toMatchObject({ reason: 'established' });
    });

    it('refuses a receiver beyond n while the pipe still waits for its sender', async () => {
      const broker = await make();
      await broker.openReceiver({ path: '/full', receivers: 1 });
      await expect(broker.openReceiver({ path: '/full', receivers: 1 })).rejects.toMatchObject({
        reason: 'receivers-full',
      });
    });

    it('a sender that leaves before the start frees the slot; the waiting receiver stays', async () => {
      const broker = await make();
      const first = await broker.openSender({ path: '/left', receivers: 1 });
      const receiver = await broker.openReceiver({ path: '/left', receivers: 1 });
      // Established already (both present): release is a no-op and abort fails the receiver.
      first.abort('gone');
      await expect(receiver.waitForStart(never)).rejects.toBeInstanceOf(SenderAbortedError);

      const lonely = await broker.openSender({ path: '/left2', receivers: 1 });
      lonely.release();
      await eventually(() => broker.stats().waiting === 0, 'nobody waits');
      const r2 = await broker.openReceiver({ path: '/left2', receivers: 2 }); // n is free again
      const s2 = await broker.openSender({ path: '/left2', receivers: 2 });
      expect(s2.connectedAtOpen).toBe(1);
      r2.cancel();
    });

    it('a receiver that leaves before the start frees its slot and the sender is told', async () => {
      const broker = await make();
      const events: SenderEvent[] = [];
      const sender = await broker.openSender({ path: '/rl', receivers: 2, onEvent: (e) => events.push(e) });
      const r1 = await broker.openReceiver({ path: '/rl', receivers: 2 });
      r1.cancel();
      await eventually(() => events.at(-1)?.type === 'receiver-left', 'the sender hears of it');
      expect(events.at(-1)).toEqual({ type: 'receiver-left', connected: 0, receivers: 2 });
      await broker.openReceiver({ path: '/rl', receivers: 2 });
      await broker.openReceiver({ path: '/rl', receivers: 2 });
      await sender.waitForReceivers(never);
    });

    it('a party that nobody joins leaves no pipe behind', async () => {
      const broker = await make();
      const r = await broker.openReceiver({ path: '/gone', receivers: 1 });
      const s = await broker.openSender({ path: '/gone2', receivers: 1 });
      expect(broker.stats()).toEqual({ pipes: 2, waiting: 2 });
      r.cancel();
      s.release();
      await eventually(
        () => broker.stats().pipes === 0 && broker.stats().waiting === 0,
        'both are forgotten',
      );
    });

    it('sender abort mid-body fails every receiver: truncation is never silent', async () => {
      const broker = await make();
      const sender = await broker.openSender({ path: '/abort', receivers: 2 });
      const rs = [
        await broker.openReceiver({ path: '/abort', receivers: 2 }),
        await broker.openReceiver({ path: '/abort', receivers: 2 }),
      ];
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await sender.write(bytes('partial'));
      const readings = rs.map(async (r) => {
        await r.waitForStart(never);
        return readAll(r);
      });
      sender.abort('upload broke');
      for (const reading of readings) await expect(reading).rejects.toBeInstanceOf(SenderAbortedError);
    });

    it('one of two receivers aborting: the sender is told and the other gets everything', async () => {
      const broker = await make();
      const events: SenderEvent[] = [];
      const sender = await broker.openSender({ path: '/r2', receivers: 2, onEvent: (e) => events.push(e) });
      const quitter = await broker.openReceiver({ path: '/r2', receivers: 2 });
      const stayer = await broker.openReceiver({ path: '/r2', receivers: 2 });
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await stayer.waitForStart(never);
      const reading = readAll(stayer);
      await sender.write(bytes('one,'));
      quitter.cancel();
      await eventually(() => events.at(-1)?.type === 'receiver-aborted', 'the sender hears of it');
      expect(events.at(-1)).toEqual({ type: 'receiver-aborted', remaining: 1, receivers: 2 });
      // The quitter no longer holds the window back: many windows' worth still flows to the stayer.
      const chunk = new Uint8Array(16 * 1024).fill(1);
      for (let i = 0; i < 20; i++) await sender.write(chunk);
      await sender.end();
      const got = await reading;
      expect(Buffer.concat(got).length).toBe(4 + 20 * chunk.length);
    });

    it('all receivers gone: write rejects so the sender stops', async () => {
      const broker = await make();
      const sender = await broker.openSender({ path: '/rg', receivers: 1 });
      const r = await broker.openReceiver({ path: '/rg', receivers: 1 });
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await r.waitForStart(never);
      r.cancel();
      await expect(
        (async () => {
          for (let i = 0; i < 100; i++) await sender.write(new Uint8Array(16 * 1024));
        })(),
      ).rejects.toBeInstanceOf(ReceiversGoneError);
    });

    it('backpressure: a receiver that does not read holds the sender at the window', async () => {
      const windowBytes = 32 * 1024;
      const broker = await make({ windowBytes });
      const sender = await broker.openSender({ path: '/bp', receivers: 1 });
      const r = await broker.openReceiver({ path: '/bp', receivers: 1 });
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await r.waitForStart(never);
      const chunk = new Uint8Array(8 * 1024);
      let written = 0;
      let blocked: Promise<void> | undefined;
      for (let i = 0; i < 64; i++) {
        const write = sender.write(chunk);
        if (await isPending(write)) {
          blocked = write;
          break;
        }
        written += chunk.length;
      }
      expect(blocked).toBeDefined();
      // Held at most one window plus the chunk in flight.
      expect(written).toBeLessThanOrEqual(windowBytes + chunk.length);
      expect(written).toBeGreaterThanOrEqual(windowBytes - chunk.length);
      // Reading frees room and lets the sender go on.
      for (let i = 0; i < 4; i++) await r.read();
      await blocked;
    });

    it('the wait for receivers ends when its signal aborts', async () => {
      const broker = await make();
      const sender = await broker.openSender({ path: '/sig', receivers: 1 });
      const controller = new AbortController();
      const waiting = sender.waitForReceivers(controller.signal);
      controller.abort(new Error('client left'));
      await expect(waiting).rejects.toThrow('client left');
      sender.release();
      await eventually(() => broker.stats().pipes === 0, 'the pipe is forgotten');
    });

    it('a path is reusable once its transfer has ended', async () => {
      const broker = await make();
      for (let round = 0; round < 3; round++) {
        const r = await broker.openReceiver({ path: '/again', receivers: 1 });
        const s = await broker.openSender({ path: '/again', receivers: 1 });
        await s.waitForReceivers(never);
        await s.start({ headers: [] });
        await r.waitForStart(never);
        const reading = readAll(r);
        await s.write(bytes(`round ${round}`));
        await s.end();
        expect(text(await reading)).toBe(`round ${round}`);
      }
      await eventually(() => broker.stats().pipes === 0 && broker.stats().waiting === 0, 'all is forgotten');
    });

    it('limits: pipes and waiting parties are capped', async () => {
      const broker = await make({ maxPipes: 2, maxWaiting: 3 });
      await broker.openReceiver({ path: '/l1', receivers: 2 });
      await broker.openReceiver({ path: '/l2', receivers: 1 });
      await expect(broker.openReceiver({ path: '/l3', receivers: 1 })).rejects.toMatchObject({
        limit: 'pipes',
      });
      await broker.openReceiver({ path: '/l1', receivers: 2 });
      const over = broker.openSender({ path: '/l2', receivers: 1 });
      await expect(over).rejects.toBeInstanceOf(CapacityError);
      await expect(over).rejects.toMatchObject({ limit: 'waiting' });
    });

    it('drain fails waiting parties and refuses new ones; running transfers finish', async () => {
      const broker = await make();
      const waiting = await broker.openReceiver({ path: '/w', receivers: 1 });
      const s = await broker.openSender({ path: '/run', receivers: 1 });
      const r = await broker.openReceiver({ path: '/run', receivers: 1 });
      await s.waitForReceivers(never);
      await s.start({ headers: [] });
      broker.drain();
      await expect(waiting.waitForStart(never)).rejects.toBeInstanceOf(BrokerClosedError);
      await expect(broker.openSender({ path: '/new', receivers: 1 })).rejects.toBeInstanceOf(
        BrokerClosedError,
      );
      await r.waitForStart(never);
      const reading = readAll(r);
      await s.write(bytes('still here'));
      await s.end();
      expect(text(await reading)).toBe('still here');
    });
  });
}
