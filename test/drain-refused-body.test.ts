import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DRAIN_MAX_BYTES,
  DRAIN_MAX_MS,
  drainRefusedBody,
} from '../src/adapter/cloudflare-workers/drain-refused-body.js';

/** A PUT whose body is `source`, as a Worker receives it. */
const upload = (source: UnderlyingDefaultSource<Uint8Array>) =>
  new Request('http://127.0.0.1/p', {
    method: 'PUT',
    body: new ReadableStream(source),
    duplex: 'half',
  } as RequestInit);

/** An answer that refuses the request. */
const REFUSED = new Response('[ERROR] no\n', { status: 409 });

describe('drainRefusedBody', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('leaves the body of an accepted request to the transfer that will read it (a sender that came first)', async () => {
    const request = upload({ start: (controller) => controller.enqueue(new Uint8Array(1)) });
    const transcript = new Response('[INFO] Waiting for 1 receiver(s)...\n');
    expect(await drainRefusedBody(request, transcript)).toBe(transcript);
    expect(request.bodyUsed).toBe(false);
  });

  it('reads the unread body of a refused request to its end, then answers', async () => {
    let pulled = 0;
    const request = upload({
      pull(controller) {
        if (++pulled > 10) controller.close();
        else controller.enqueue(new Uint8Array(1000));
      },
    });
    expect(await drainRefusedBody(request, REFUSED)).toBe(REFUSED);
    expect(pulled).toBe(11);
    expect(request.bodyUsed).toBe(true);
  });

  it('stops past DRAIN_MAX_BYTES and cancels the rest', async () => {
    let read = 0;
    let cancelled = false;
    const request = upload({
      pull(controller) {
        read += 64 * 1024;
        controller.enqueue(new Uint8Array(64 * 1024));
      },
      cancel() {
        cancelled = true;
      },
    });
    await drainRefusedBody(request, REFUSED);
    expect(cancelled).toBe(true);
    expect(read).toBeGreaterThan(DRAIN_MAX_BYTES);
    expect(read).toBeLessThan(DRAIN_MAX_BYTES + 4 * 64 * 1024);
  });

  it('gives up on a body that stalls after DRAIN_MAX_MS, cancelling it', async () => {
    vi.useFakeTimers();
    let cancelled = false;
    const request = upload({
      start(controller) {
        controller.enqueue(new Uint8Array(10));
      },
      cancel() {
        cancelled = true;
      },
    });
    let done = false;
    const draining = drainRefusedBody(request, REFUSED).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(DRAIN_MAX_MS - 1);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await draining;
    expect(cancelled).toBe(true);
  });

  it('leaves a body alone that a transfer holds (locked) or that was read', async () => {
    const held = upload({ start: (controller) => controller.enqueue(new Uint8Array(1)) });
    const reader = held.body?.getReader();
    await drainRefusedBody(held, REFUSED);
    expect(await reader?.read()).toMatchObject({ done: false });

    const read = upload({
      start(controller) {
        controller.enqueue(new Uint8Array(1));
        controller.close();
      },
    });
    await read.arrayBuffer();
    await expect(drainRefusedBody(read, REFUSED)).resolves.toBe(REFUSED);
    await expect(drainRefusedBody(new Request('http://127.0.0.1/p'), REFUSED)).resolves.toBe(REFUSED);
  });
});
