// The parts of Workers' self-heal and native body path that run without workerd: the whole-body pump's idle
// timeout and the PipeObject's bounded report batches (workers-selfheal.test.ts runs them under workerd).
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WatchReport } from '../src/adapter/cloudflare-workers/watch-object.js';
import { WatchReporter } from '../src/adapter/cloudflare-workers/watch-reporter.js';
import { ReceiversGoneError } from '../src/broker/errors.js';
import { pumpWholeBody } from '../src/broker/memory/whole-body-pump.js';
import { ClientIdleError } from '../src/byte-source-guards.js';
import { ManualClock } from './helpers/manual-clock.js';

/** A body the test feeds by hand. */
function handBody() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  return { stream, controller };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('pumpWholeBody', () => {
  it('passes a body through and ends the receiver stream', async () => {
    const body = handBody();
    const pass = new TransformStream<Uint8Array, Uint8Array>();
    const pumped = pumpWholeBody(body.stream, pass.writable, new ManualClock(), 1000);
    body.controller.enqueue(new Uint8Array([1, 2, 3]));
    body.controller.close();
    const received = await new Response(pass.readable).arrayBuffer();
    await pumped;
    expect([...new Uint8Array(received)]).toEqual([1, 2, 3]);
  });

  it('cuts a sender whose read waited idleMs: ClientIdleError, the receiver stream errors', async () => {
    const clock = new ManualClock();
    const body = handBody();
    const pass = new TransformStream<Uint8Array, Uint8Array>();
    const pumped = pumpWholeBody(body.stream, pass.writable, clock, 1000);
    const outcome = pumped.then(
      () => 'ended',
      (error: unknown) => error,
    );
    const reader = pass.readable.getReader();
    body.controller.enqueue(new Uint8Array(10));
    expect((await reader.read()).value?.byteLength).toBe(10);
    // The pump's write settles and its next read starts (at 0).
    await settle();
    clock.advance(600);
    await settle();
    clock.advance(399);
    await settle();
    expect(await Promise.race([outcome, settle().then(() => 'running')])).toBe('running');
    clock.advance(1);
    const error = await outcome;
    expect(error).toBeInstanceOf(ClientIdleError);
    expect((error as Error).message).toBe('The upload sent nothing for 1 s.');
    await expect(reader.read()).rejects.toBeInstanceOf(ClientIdleError);
  });

  it('a slow receiver is not an idle sender', async () => {
    const clock = new ManualClock();
    const body = handBody();
    // Nothing reads the pass-through yet: the second write waits on the receiver.
    const pass = new TransformStream<Uint8Array, Uint8Array>();
    const pumped = pumpWholeBody(body.stream, pass.writable, clock, 1000);
    body.controller.enqueue(new Uint8Array(1));
    body.controller.enqueue(new Uint8Array(2));
    body.controller.enqueue(new Uint8Array(3));
    body.controller.close();
    await settle();
    clock.advance(5000);
    await settle();
    const received = await new Response(pass.readable).arrayBuffer();
    await pumped;
    expect(received.byteLength).toBe(6);
  });

  it('a receiver that left ends it with ReceiversGoneError and cancels the body', async () => {
    const body = handBody();
    const pass = new TransformStream<Uint8Array, Uint8Array>();
    const pumped = pumpWholeBody(body.stream, pass.writable, new ManualClock(), 1000);
    await pass.readable.cancel();
    body.controller.enqueue(new Uint8Array(1));
    await expect(pumped).rejects.toBeInstanceOf(ReceiversGoneError);
  });

  it('idleMs 0: a native pipeTo, no timer', async () => {
    const clock = new ManualClock();
    const body = handBody();
    const pass = new TransformStream<Uint8Array, Uint8Array>();
    const pumped = pumpWholeBody(body.stream, pass.writable, clock, 0);
    expect(clock.pending).toBe(0);
    body.controller.close();
    await new Response(pass.readable).arrayBuffer();
    await pumped;
  });

  it('reads a byte stream into buffers that double when filled and halve after 8 small reads, bytes intact', async () => {
    // What the body offers per pull, as workerd does: pieces of these sizes, cut to the buffer offered.
    const pieces = [8192, 20, 16384, 100_000, 100_000, ...new Array(8).fill(100), 3000];
    const offered: number[] = [];
    let sent = 0;
    const byteSource: UnderlyingByteSource = {
      type: 'bytes',
      pull(controller) {
        const request = controller.byobRequest!;
        const view = request.view!;
        offered.push(view.byteLength);
        const piece = pieces.shift();
        if (piece === undefined) {
          controller.close();
          request.respond(0);
          return;
        }
        const n = Math.min(piece, view.byteLength);
        const bytes = new Uint8Array(view.buffer, view.byteOffset, n);
        for (let i = 0; i < n; i++) bytes[i] = (sent + i) % 251;
        sent += n;
        request.respond(n);
      },
    };
    const body = new ReadableStream(byteSource) as ReadableStream<Uint8Array>;
    const pass = new TransformStream<Uint8Array, Uint8Array>();
    const pumped = pumpWholeBody(body, pass.writable, new ManualClock(), 1000);
    const received = new Uint8Array(await new Response(pass.readable).arrayBuffer());
    await pumped;
    // One piece of 20 bytes keeps the buffer (a buffer sized after the last read fell back to 8 KiB); eight
    // of 100 in a row halve it (a fixed 64 KiB per read allocated 16x the bytes of 4 KB pieces, issue 16).
    const large = new Array(8).fill(131072);
    expect(offered).toEqual([8192, 16384, 16384, 32768, 65536, ...large, 65536, 65536]);
    expect(received.byteLength).toBe(sent);
    expect(received.every((byte, i) => byte === i % 251)).toBe(true);
  });
});

describe('WatchReporter', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('bounds a batch at 2048 samples and counts the dropped ones', async () => {
    vi.useFakeTimers();
    const reports: WatchReport[] = [];
    const reporter = new WatchReporter(
      'obj',
      () => ({ pipes: 0, waiting: 0 }),
      async (report) => reports.push(report),
    );
    for (let i = 0; i < 3000; i++) reporter.record('chunk', i);
    await vi.advanceTimersByTimeAsync(150);
    expect(reports).toHaveLength(1);
    expect(reports[0]!.samples.chunk).toHaveLength(2048);
    expect(reports[0]!.dropped).toBe(952);
  });

  it('re-reports counts while pipes are held, once more at zero, then stops', async () => {
    vi.useFakeTimers();
    const reports: WatchReport[] = [];
    let stats = { pipes: 1, waiting: 1 };
    const reporter = new WatchReporter(
      'obj',
      () => stats,
      async (report) => reports.push(report),
    );
    reporter.changed();
    await vi.advanceTimersByTimeAsync(150);
    expect(reports.map((r) => r.waiting)).toEqual([1]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(reports.map((r) => r.waiting)).toEqual([1, 1]);
    stats = { pipes: 0, waiting: 0 };
    await vi.advanceTimersByTimeAsync(5000);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(reports.map((r) => r.waiting)).toEqual([1, 1, 0]);
  });

  it('a report never answered is given up after 3 s: the next ones still go', async () => {
    vi.useFakeTimers();
    let sent = 0;
    const reporter = new WatchReporter(
      'obj',
      () => ({ pipes: 0, waiting: 0 }),
      () => {
        sent += 1;
        return new Promise(() => {});
      },
    );
    reporter.record('ttfb', 1);
    await vi.advanceTimersByTimeAsync(150);
    reporter.record('ttfb', 2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toBe(1);
    await vi.advanceTimersByTimeAsync(3000);
    expect(sent).toBe(2);
  });
});
