import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pipeKeys } from '../src/broker/redis/keys.js';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import type { ReceiverSession } from '../src/broker/types.js';
import { runBrokerTests } from './broker-contract.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { runTopicTests } from './topic-contract.js';

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startTestCluster();
});
afterAll(async () => {
  await cluster?.stop();
});

const SPREAD_LIMITS = { windowBytes: 64 * 1024, maxPipes: 100, maxWaiting: 100 };
const newPrefix = () => `t${randomUUID().slice(0, 8)}:`;

runBrokerTests({
  name: 'redis-cluster',
  newBroker: async (limits) => {
    // A key prefix of its own per broker: tests never see each other's pipes.
    const broker = new RedisBroker({
      target: { cluster: cluster.seeds },
      keyPrefix: newPrefix(),
      ...limits,
      pollMs: 100,
      // A receiver that drops holds its place this long (the contract's "the sender is told").
      resumeGraceMs: 200,
    });
    await broker.ready();
    return broker;
  },
});

// Topics: every key of a namespace carries its hash tag, so the append and the namespace read (one
// script over many streams) run on one slot.
const topicBrokers: RedisBroker[] = [];
afterAll(async () => {
  await Promise.all(topicBrokers.map((broker) => broker.close()));
});
runTopicTests({
  name: 'redis-cluster',
  serverTime: true,
  newStore: async (options) => {
    const broker = new RedisBroker({
      target: { cluster: cluster.seeds },
      keyPrefix: newPrefix(),
      ...SPREAD_LIMITS,
    });
    await broker.ready();
    topicBrokers.push(broker);
    return broker.openTopics(options);
  },
});

/** Which master (by port) serves each slot, from `CLUSTER SLOTS`. */
async function slotOwners(client: Cluster): Promise<(slot: number) => number> {
  const ranges = await client.cluster('SLOTS');
  return (slot) => {
    const master = ranges.find(([from, to]) => slot >= from && slot <= to)?.[2];
    if (!master) throw new Error(`no master serves slot ${slot}`);
    return master[1];
  };
}

async function readAll(session: ReceiverSession): Promise<string> {
  const chunks: Uint8Array[] = [];
  for (let chunk = await session.read(); chunk !== null; chunk = await session.read()) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

describe('redis-cluster: pipes spread over the masters', () => {
  const never = new AbortController().signal;
  let admin: Cluster;
  let broker: RedisBroker | undefined;
  beforeAll(async () => {
    admin = new Cluster(cluster.seeds, { lazyConnect: true });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.quit();
  });
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });

  it('pipes on different slots live on different masters and all still transfer', async () => {
    const prefix = newPrefix();
    const ownerOf = await slotOwners(admin);
    // Paths chosen by the cluster's own hashing, so every master gets a pipe whatever the random prefix.
    const byMaster = new Map<number, string[]>();
    for (let i = 0; i < 200 && [...byMaster.values()].filter((p) => p.length >= 2).length < 3; i++) {
      const path = `/spread/${i}`;
      const slot = await admin.cluster('KEYSLOT', pipeKeys(prefix, path).meta);
      const owner = ownerOf(slot);
      byMaster.set(owner, [...(byMaster.get(owner) ?? []), path].slice(0, 2));
    }
    expect([...byMaster.keys()].sort((a, b) => a - b)).toEqual([...cluster.ports].sort((a, b) => a - b));
    const paths = [...byMaster.values()].flat();

    broker = new RedisBroker({
      target: { cluster: cluster.seeds },
      keyPrefix: prefix,
      ...SPREAD_LIMITS,
      pollMs: 100,
    });
    await broker.ready();
    const pipes = [];
    for (const path of paths) {
      const receiver = await broker.openReceiver({ path, receivers: 1 });
      const sender = await broker.openSender({ path, receivers: 1 });
      pipes.push({ path, sender, receiver });
    }

    // While the pipes wait, look at each master's own keyspace (KEYS is node-local): every pipe's keys are on
    // the master that owns its slot, and more than one master holds some.
    const keysByPort = new Map<number, string[]>();
    for (const port of cluster.ports) {
      const node = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      await node.connect();
      try {
        keysByPort.set(port, await node.keys(`${prefix}*`));
      } finally {
        node.disconnect();
      }
    }
    const holding = [...keysByPort].filter(([, keys]) => keys.length > 0).map(([port]) => port);
    expect(holding.length).toBeGreaterThanOrEqual(2);
    for (const [port, paths] of byMaster) {
      for (const path of paths) expect(keysByPort.get(port)).toContain(pipeKeys(prefix, path).meta);
    }

    await Promise.all(
      pipes.map(async ({ path, sender, receiver }) => {
        await sender.waitForReceivers(never);
        await sender.start({ headers: [['X-Path', path]] });
        expect((await receiver.waitForStart(never)).headers).toEqual([['X-Path', path]]);
        const reading = readAll(receiver);
        await sender.write(new TextEncoder().encode(`body of ${path}`));
        await sender.end();
        expect(await reading).toBe(`body of ${path}`);
      }),
    );
    // The parties leave a moment after the last byte: give the books a bounded while to empty.
    for (let i = 0; i < 100 && broker.stats().pipes > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
  });
});
