import { describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import type { ByteSource } from '../src/byte-source.js';
import { ClientIdleError, limitedUpload, stallGuarded } from '../src/byte-source-guards.js';
import { type ConfigInput, parseConfig } from '../src/config.js';
import { ManualClock } from './helpers/manual-clock.js';

const BASE = 'http://edge.test';

function setup(input: ConfigInput = {}) {
  const clock = new ManualClock();
  const app = createApp(parseConfig(input), { clock, logError: () => {} });
  const request = (path: string, init?: RequestInit) => app.request(`${BASE}${path}`, init);
  return { clock, request };
}

/** A body that sends `first` and then nothing, until the test ends it. */
function stalledBody(first: string) {
  let close: () => void = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(first));
      close = () => controller.close();
    },
  });
  return { body, close };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 10));

describe('body size cap', () => {
  it('answers 413 to a declared length over the cap before anything waits', async () => {
    const { request } = setup({ limits: { maxBodyBytes: 1000 } });
    // As a client on the wire declares it (app.request does not add the header itself).
    const response = await request('/big', {
      method: 'PUT',
      body: 'x'.repeat(1001),
      headers: { 'Content-Length': '1001' },
    });
    expect(response.status).toBe(413);
    expect(await response.text()).toBe('[ERROR] The body is 1001 bytes; this server accepts at most 1000.\n');
    const fits = request('/big');
    const sent = await request('/big', { method: 'PUT', body: 'x'.repeat(1000) });
    expect((await (await fits).text()).length).toBe(1000);
    expect(await sent.text()).toContain('Sent successfully!');
  });

  it('cuts a chunked body that grows past the cap: the receiver sees an error, not a short file', async () => {
    const { request } = setup({ limits: { maxBodyBytes: 100_000 } });
    const chunk = new Uint8Array(40_000);
    let sentChunks = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sentChunks++ < 10) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const receiving = request('/grows');
    const sent = await request('/grows', { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const received = await receiving;
    await expect(received.arrayBuffer()).rejects.toThrow();
    expect(await sent.text()).toContain(
      '[ERROR] The body is larger than the 100000 bytes this server accepts.',
    );
    expect(sentChunks).toBeLessThan(10);
  });
});

describe('slow clients', () => {
  it('drops an upload that sends nothing for idleTimeoutMs, and says so', async () => {
    const { request, clock } = setup({ limits: { idleTimeoutMs: 5000 } });
    const { body } = stalledBody('abc');
    const receiving = request('/idle');
    const sent = await request('/idle', { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const received = await receiving;
    const reader = received.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('abc');
    await tick();
    clock.advance(4999);
    await tick();
    const transcriptSoFar = sent.clone();
    clock.advance(1);
    await expect(reader.read()).rejects.toThrow();
    expect(await transcriptSoFar.text()).toContain('[ERROR] The upload sent nothing for 5 s.');
  });

  it('does not count the wait for a receiver as idle', async () => {
    const { request, clock } = setup({ limits: { idleTimeoutMs: 5000 } });
    const sending = request('/late', { method: 'PUT', body: 'patient' });
    clock.advance(60_000);
    await tick();
    const received = await request('/late');
    expect(await received.text()).toBe('patient');
    expect(await (await sending).text()).toContain('Sent successfully!');
  });
});

describe('byte source guards', () => {
  /** A source handing out `chunks`, then waiting forever; records cancellation. */
  function source(chunks: string[]): ByteSource & { cancelled: boolean } {
    const queue = chunks.map((text) => new TextEncoder().encode(text));
    const self = {
      cancelled: false,
      read: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise<Uint8Array>(() => {})),
      cancel: () => {
        self.cancelled = true;
      },
    };
    return self;
  }

  it('stallGuarded gives up on a consumer that stops reading, not on one waiting for bytes', async () => {
    const clock = new ManualClock();
    const upstream = source(['a', 'b']);
    const guarded = stallGuarded(upstream, clock, 1000);
    let abandoned: Error | undefined;
    guarded.abandoned!.then((error) => {
      abandoned = error;
    });
    await guarded.read();
    clock.advance(900);
    await guarded.read();
    clock.advance(900);
    // The consumer read again in time both times; now it waits on the source, which is not its fault.
    void guarded.read();
    clock.advance(10_000);
    await tick();
    expect(abandoned).toBeUndefined();
    expect(upstream.cancelled).toBe(false);

    // A chunk of 500 bytes gets 1000 ms plus 500 ms (a ~1 KB/s client's time to take it).
    const stalled = stallGuarded(source(['x'.repeat(500)]), clock, 1000);
    let given: Error | undefined;
    stalled.abandoned!.then((error) => {
      given = error;
    });
    await stalled.read();
    clock.advance(1499);
    await tick();
    expect(given).toBeUndefined();
    clock.advance(1);
    await tick();
    expect(given).toBeInstanceOf(ClientIdleError);
  });

  it('stallGuarded measures from the latest chunk, also when a small one follows a big one', async () => {
    const clock = new ManualClock();
    const guarded = stallGuarded(source(['x'.repeat(5000), 'y']), clock, 1000);
    let given: Error | undefined;
    guarded.abandoned!.then((error) => {
      given = error;
    });
    await guarded.read();
    clock.advance(100);
    await guarded.read();
    // Due 1001 ms after the small chunk, not 6000 ms after the big one.
    clock.advance(1000);
    await tick();
    expect(given).toBeUndefined();
    clock.advance(1);
    await tick();
    expect(given).toBeInstanceOf(ClientIdleError);
  });

  it('limitedUpload fails a read that waits past the idle time and cancels the body', async () => {
    const clock = new ManualClock();
    const upstream = source(['x']);
    const limited = limitedUpload(upstream, { clock, idleMs: 100 });
    expect(await limited.read()).toEqual(new TextEncoder().encode('x'));
    const waiting = limited.read();
    clock.advance(100);
    await expect(waiting).rejects.toBeInstanceOf(ClientIdleError);
    expect(upstream.cancelled).toBe(true);
  });
});

describe('request head cap', () => {
  it('answers 431 to headers over maxHeaderBytes', async () => {
    const { request } = setup({ server: { maxHeaderBytes: 2048 } });
    const response = await request('/version', { headers: { 'X-Big': 'y'.repeat(3000) } });
    expect(response.status).toBe(431);
    expect((await request('/version')).status).toBe(200);
  });
});
