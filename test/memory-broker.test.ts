import { describe, expect, it } from 'vitest';
import { ReceiversGoneError } from '../src/broker/errors.js';
import { MemoryBroker } from '../src/broker/memory/memory-broker.js';
import { runBrokerTests } from './broker-contract.js';

runBrokerTests({ name: 'memory', newBroker: async (limits) => new MemoryBroker(limits) });

// The Durable Object's broker (issue 16): the same broker with a pass-through for bodies handed over whole.
// Under workerd the pass-through is native; here a web TransformStream stands in for it.
const passThrough = () => new TransformStream<Uint8Array, Uint8Array>();
runBrokerTests({
  name: 'memory with passThrough',
  newBroker: async (limits) => new MemoryBroker({ ...limits, passThrough }),
});

const LIMITS = { windowBytes: 64 * 1024, maxPipes: 4, maxWaiting: 4 };

describe('memory broker: a body handed over whole (startStream)', () => {
  it('is offered only with a passThrough', async () => {
    const plain = new MemoryBroker(LIMITS);
    const sender = await plain.openSender({ path: '/p', receivers: 1 });
    expect(sender.startStream).toBeUndefined();
    await plain.close();
  });

  it('reaches the one receiver as its meta.body, and frees the path at the end', async () => {
    const broker = new MemoryBroker({ ...LIMITS, passThrough });
    const sender = await broker.openSender({ path: '/whole', receivers: 1 });
    const receiver = await broker.openReceiver({ path: '/whole', receivers: 1 });
    await sender.waitForReceivers(new AbortController().signal);
    const body = new Blob([new Uint8Array(100_000).fill(7)]).stream();
    const sent = sender.startStream!({ headers: [['Content-Type', 'x/y']] }, body, 100_000);
    const meta = await receiver.waitForStart(new AbortController().signal);
    expect(meta.headers).toEqual([['Content-Type', 'x/y']]);
    const bytes = new Uint8Array(await new Response(meta.body).arrayBuffer());
    await sent;
    expect(await meta.delivered).toBe(true);
    expect(bytes.byteLength).toBe(100_000);
    expect(bytes.every((b) => b === 7)).toBe(true);
    expect(await broker.inspect('/whole')).toBeUndefined();
  });

  it('rejects for a pipe of several receivers, and when the receiver cancels', async () => {
    const broker = new MemoryBroker({ ...LIMITS, passThrough });
    const sender = await broker.openSender({ path: '/two', receivers: 2 });
    await broker.openReceiver({ path: '/two', receivers: 2 });
    await broker.openReceiver({ path: '/two', receivers: 2 });
    await expect(sender.startStream!({ headers: [] }, new Blob(['x']).stream(), 1)).rejects.toThrow(/n > 1/);

    const one = await broker.openSender({ path: '/gone', receivers: 1 });
    const receiver = await broker.openReceiver({ path: '/gone', receivers: 1 });
    const endless = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(new Uint8Array(1024)) });
    const sent = one.startStream!({ headers: [] }, endless, undefined);
    const meta = await receiver.waitForStart(new AbortController().signal);
    await meta.body!.cancel('left');
    await expect(sent).rejects.toBeInstanceOf(ReceiversGoneError);
    expect(await meta.delivered).toBe(false);
    expect(await broker.inspect('/gone')).toBeUndefined();
  });
});
