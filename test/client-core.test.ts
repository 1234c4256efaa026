import { describe, expect, it } from 'vitest';
import { ProgressView } from '../src/cli/progress-view.js';
import { sizeBytes, targetUrl } from '../src/cli/transfer-options.js';
import { GaveUpError, UsageError } from '../src/client/errors.js';
import { ReplayBuffer } from '../src/client/plain-source.js';
import { Backoff, retryAfterMs, retryableStatus } from '../src/client/retry-policy.js';
import { parseTranscriptLine, readTranscript, type TranscriptLine } from '../src/client/transcript-reader.js';
import { pieceReceivedLine } from '../src/protocol/transcript-lines.js';

const streamOf = (pieces: Uint8Array[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const piece of pieces) controller.enqueue(piece);
      controller.close();
    },
  });

async function readAll(stream: ReadableStream<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) out.push(...chunk);
  return out;
}

describe('retry policy', () => {
  it('waits a random time below a cap that doubles from the base up to the cap (full jitter)', () => {
    let now = 0;
    const backoff = new Backoff(
      { baseMs: 500, capMs: 4000, budgetMs: 0 },
      () => now,
      () => 0.999999,
    );
    const waits = Array.from({ length: 6 }, () => Math.round(backoff.next()!));
    expect(waits).toEqual([500, 1000, 2000, 4000, 4000, 4000]);
    const low = new Backoff(
      { baseMs: 500, capMs: 4000, budgetMs: 0 },
      () => now,
      () => 0,
    );
    expect(low.next()).toBe(0);
    now += 1;
  });

  it('starts over from the base once bytes move', () => {
    const backoff = new Backoff(
      { baseMs: 100, capMs: 10_000, budgetMs: 0 },
      () => 0,
      () => 0.999999,
    );
    backoff.next();
    backoff.next();
    expect(Math.round(backoff.next()!)).toBe(400);
    backoff.progressed();
    expect(Math.round(backoff.next()!)).toBe(100);
  });

  it('gives up once the budget passed without progress, and never waits past it', () => {
    let now = 0;
    const backoff = new Backoff(
      { baseMs: 1000, capMs: 1000, budgetMs: 2500 },
      () => now,
      () => 0.999999,
    );
    expect(Math.round(backoff.next()!)).toBe(1000);
    now = 2000;
    expect(backoff.next()).toBe(500);
    now = 2500;
    expect(backoff.next()).toBeUndefined();
    backoff.progressed();
    expect(backoff.next()).toBe(999.999);
  });

  it('takes the server its Retry-After: seconds or a date, up to 5 minutes', () => {
    const now = Date.parse('2026-12-01T00:00:00Z');
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs('Tue, 01 Dec 2026 00:00:10 GMT', now)).toBe(10_000);
    expect(retryAfterMs('86400', now)).toBe(5 * 60_000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
    const backoff = new Backoff(
      { baseMs: 100, capMs: 200, budgetMs: 0 },
      () => 0,
      () => 0,
    );
    expect(backoff.next(3000)).toBe(3000);
  });

  it('retries timeouts, rate limits and server errors, never other refusals or 501', () => {
    expect([408, 429, 500, 502, 503, 504].every(retryableStatus)).toBe(true);
    expect([400, 401, 403, 404, 409, 413, 416, 501].some(retryableStatus)).toBe(false);
  });
});

describe('transcript reader', () => {
  it('reads the lines that carry meaning, across chunk boundaries', async () => {
    const text =
      '[INFO] Waiting for 2 receiver(s)...\n[INFO] Start sending to 2 receiver(s)!\n' +
      '[INFO] Resuming the transfer at byte 1234.\n[INFO] Sent successfully!\n' +
      '[INFO] 1 of 2 receiver(s) received everything; 1 aborted.\n[ERROR] No receiver came within 300 s.\n';
    const bytes = new TextEncoder().encode(text);
    const pieces = [bytes.subarray(0, 7), bytes.subarray(7, 50), bytes.subarray(50)];
    const lines: TranscriptLine[] = [];
    await readTranscript(streamOf(pieces), (line) => lines.push(line));
    expect(lines.map((l) => l.kind)).toEqual([
      'info',
      'started',
      'resumed',
      'info',
      'partly-received',
      'nobody-came',
    ]);
    expect(lines[2]).toEqual({ kind: 'resumed', offset: 1234 });
    expect(lines[4]).toEqual({ kind: 'partly-received', received: 1, aborted: 1 });
  });

  it('reads the piece line: where the next piece continues', () => {
    expect(parseTranscriptLine(`[INFO] ${pieceReceivedLine(1048576)}`)).toEqual({
      kind: 'piece',
      offset: 1048576,
    });
    // Two offsets that disagree are no piece line.
    expect(parseTranscriptLine('[INFO] Piece received: continue from byte 5 with ?offset=6.').kind).toBe(
      'info',
    );
  });

  it('knows success and every receiver leaving', () => {
    expect(parseTranscriptLine('[INFO] All receiver(s) was/were received successfully.').kind).toBe(
      'all-received',
    );
    expect(parseTranscriptLine('[ERROR] All receiver(s) was/were closed halfway.').kind).toBe(
      'receivers-gone',
    );
    expect(parseTranscriptLine('[ERROR] Failed to send.')).toEqual({
      kind: 'error',
      text: 'Failed to send.',
    });
  });

  it('keeps a bounded part of an endless line', async () => {
    const endless = new TextEncoder().encode('x'.repeat(100_000));
    const lines: TranscriptLine[] = [];
    await readTranscript(streamOf([endless, endless]), (line) => lines.push(line));
    expect(lines).toHaveLength(1);
    expect((lines[0] as { text: string }).text.length).toBeLessThanOrEqual(4096);
  });
});

describe('replay buffer', () => {
  const bytes = (from: number, to: number) =>
    Uint8Array.from({ length: to - from }, (_, i) => (from + i) % 256);

  it('re-reads from any offset it still holds, and reads on from the stream after it', async () => {
    const buffer = new ReplayBuffer(streamOf([bytes(0, 100), bytes(100, 200), bytes(200, 300)]), 1000);
    const first = buffer.from(0).getReader();
    await first.read();
    await first.read();
    await first.cancel();
    expect(await readAll(buffer.from(50))).toEqual([...bytes(50, 300)]);
  });

  it('says clearly when a resume needs bytes it no longer holds', async () => {
    const buffer = new ReplayBuffer(streamOf([bytes(0, 100), bytes(100, 200), bytes(200, 300)]), 150);
    await readAll(buffer.from(0));
    expect(buffer.oldestOffset).toBe(100);
    expect(() => buffer.from(99)).toThrow(GaveUpError);
    expect(() => buffer.from(99)).toThrow(/replay buffer only holds bytes from 100/);
    expect(await readAll(buffer.from(120))).toEqual([...bytes(120, 300)]);
  });

  it('never holds much more than its capacity', async () => {
    const pieces = Array.from({ length: 100 }, (_, i) => bytes(i * 1000, (i + 1) * 1000));
    const buffer = new ReplayBuffer(streamOf(pieces), 10_000);
    await readAll(buffer.from(0));
    expect(buffer.oldestOffset).toBeGreaterThanOrEqual(100_000 - 11_000);
  });
});

describe('targets and flags', () => {
  it('takes a full URL as it is, or joins a path to --server, and adds -n', () => {
    expect(targetUrl('https://b.example/x/y?sig=1', undefined, undefined).href).toBe(
      'https://b.example/x/y?sig=1',
    );
    expect(targetUrl('/a/b', 'http://127.0.0.1:8080', '3').href).toBe('http://127.0.0.1:8080/a/b?n=3');
    expect(targetUrl('a', 'http://h/base/', undefined).href).toBe('http://h/base/a');
    expect(() => targetUrl('a', undefined, undefined)).toThrow(UsageError);
    expect(() => targetUrl('http://h/a?n=2', undefined, '3')).toThrow(/n=2/);
    expect(() => targetUrl('http://h/a', undefined, '0')).toThrow(UsageError);
  });

  it('reads sizes with binary units', () => {
    expect(sizeBytes('64MiB', 0, '--x')).toBe(64 * 1024 * 1024);
    expect(sizeBytes('512k', 0, '--x')).toBe(512 * 1024);
    expect(sizeBytes('1000', 0, '--x')).toBe(1000);
    expect(() => sizeBytes('lots', 0, '--x')).toThrow(UsageError);
  });
});

describe('progress view', () => {
  it('prints one JSON object a second with bytes, total, rate and ETA, and a last one when done', async () => {
    const written: string[] = [];
    let now = 0;
    const view = new ProgressView('json', { write: (t) => written.push(t), now: () => now });
    view.on({ type: 'started', total: 1000 });
    view.on({ type: 'progress', bytes: 0 });
    now = 1000;
    view.on({ type: 'progress', bytes: 250 });
    view.finish('ok');
    const last = JSON.parse(written[written.length - 1]!);
    expect(last).toMatchObject({ state: 'done', bytes: 250, total: 1000, rate: 250, eta: 3, outcome: 'ok' });
  });
});
