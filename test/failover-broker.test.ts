import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FailoverBroker } from '../src/broker/failover-broker.js';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import type { ReceiverSession } from '../src/broker/types.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const never = new AbortController().signal;
let primary: TestRedis;
let standby: TestRedis;
const made: FailoverBroker[] = [];

beforeAll(async () => {
  [primary, standby] = await Promise.all([startTestRedis(), startTestRedis()]);
});
afterAll(async () => {
  await Promise.all([primary?.stop(), standby?.stop()]);
});
afterEach(async () => {
  await Promise.all(made.splice(0).map((broker) => broker.close()));
});

/** Two instances of one deployment (one key prefix), each with its own primary and standby connections. */
async function instances(): Promise<[FailoverBroker, FailoverBroker]> {
  const keyPrefix = `t${randomUUID().slice(0, 8)}:`;
  const one = () => {
    const options = { keyPrefix, windowBytes: 64 * 1024, maxPipes: 100, maxWaiting: 100, pollMs: 50 };
    return new FailoverBroker(
      new RedisBroker({ target: { url: primary.url }, ...options }),
      new RedisBroker({ target: { url: standby.url }, ...options }),
      { pollMs: 200 },
    );
  };
  const pair: [FailoverBroker, FailoverBroker] = [one(), one()];
  await Promise.all(pair.map((broker) => broker.ready()));
  made.push(...pair);
  return pair;
}

async function readAll(session: ReceiverSession): Promise<string> {
  const chunks: Uint8Array[] = [];
  for (let chunk = await session.read(); chunk !== null; chunk = await session.read()) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

describe('failover broker: instances that disagree about the backend still meet', () => {
  for (const order of ['sender first', 'receiver first'] as const) {
    it(`sender on a rerouted instance, receiver on one still on the primary (${order})`, async () => {
      const [rerouted, notYet] = await instances();
      rerouted.use('standby');
      const path = `/meet/${order.replace(' ', '-')}`;
      const open = async () => {
        if (order === 'sender first') {
          const sender = await rerouted.openSender({ path, receivers: 1 });
          const receiver = await notYet.openReceiver({ path, receivers: 1 });
          return { sender, receiver };
        }
        const receiver = await notYet.openReceiver({ path, receivers: 1 });
        const sender = await rerouted.openSender({ path, receivers: 1 });
        return { sender, receiver };
      };
      const { sender, receiver } = await open();
      const started = receiver.waitForStart(never);
      await sender.waitForReceivers(never);
      await sender.start({ headers: [['Content-Type', 'text/plain']] });
      expect((await started).headers).toEqual([['Content-Type', 'text/plain']]);
      const got = readAll(receiver);
      await sender.write(new TextEncoder().encode('across opinions'));
      await sender.end();
      expect(await got).toBe('across opinions');
      // The pipe lived on the standby: the rule is that a pipe waiting there wins.
      expect(rerouted.backend).toBe('standby');
      expect(notYet.backend).toBe('primary');
    });
  }

  it('new pipes follow the active backend; a pipe already running stays where it is', async () => {
    const [a, b] = await instances();
    const sender = await a.openSender({ path: '/stay', receivers: 1 });
    const receiver = await b.openReceiver({ path: '/stay', receivers: 1 });
    await sender.waitForReceivers(never);
    await sender.start({ headers: [] });
    await receiver.waitForStart(never);
    await sender.write(new TextEncoder().encode('one '));
    a.use('standby');
    b.use('standby');
    const got = readAll(receiver);
    await sender.write(new TextEncoder().encode('two'));
    await sender.end();
    expect(await got).toBe('one two');
    expect((await a.inspect('/stay'))?.state).toBe('ended');
    const next = await a.openReceiver({ path: '/new', receivers: 1 });
    expect(await b.inspect('/new')).toEqual({ state: 'waiting' });
    next.cancel();
  });
});
