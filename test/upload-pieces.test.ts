// A sender's body in pieces (`Upload-Complete: ?0`, each continued with `?offset=N`) and the whole body's
// length told apart from the request's (`Upload-Length`), through real servers over real HTTP: what a browser
// page does over HTTP/1.1, where it cannot stream a request body (docs/http-reference.md, "Pieces").
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { pieceReceivedLine } from '../src/protocol/transcript-lines.js';
import { run } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { startTestServer } from './helpers/server.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const work = mkdtempSync(join(tmpdir(), 'edgepipe-pieces-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let redis: TestRedis;
let onRedis: RunningServer;
let inMemory: RunningServer;
beforeAll(async () => {
  redis = await startTestRedis();
  [onRedis, inMemory] = await Promise.all([
    startTestServer({ broker: { redis: redis.url, resumeGraceMs: 5000 } }),
    startTestServer({ limits: { maxBodyBytes: 1_000_000 } }),
  ]);
}, 30_000);
afterAll(async () => {
  await Promise.all([onRedis?.close(), inMemory?.close()]);
  await redis?.stop();
});

const pipeUrl = (server: RunningServer) => `${server.url}/pieces/${randomUUID()}`;

/** One PUT with a Blob body (what a page sends over HTTP/1.1); its status and transcript. */
async function put(url: string, body: Uint8Array<ArrayBuffer>, headers: Record<string, string>) {
  const response = await fetch(url, { method: 'PUT', body: new Blob([body]), headers });
  return { status: response.status, text: await response.text() };
}

/** `data` in three pieces, the first two marked `Upload-Complete: ?0`, each after the one before it. */
async function sendInThreePieces(
  url: string,
  data: Uint8Array<ArrayBuffer>,
  cuts: [number, number],
  length = data.length,
) {
  const [a, b] = cuts;
  const common = { 'Upload-Length': String(length) };
  const first = await put(url, data.subarray(0, a), { ...common, 'Upload-Complete': '?0' });
  const second = await put(`${url}?offset=${a}`, data.subarray(a, b), { ...common, 'Upload-Complete': '?0' });
  const third = await put(`${url}?offset=${b}`, data.subarray(b), common);
  return [first, second, third];
}

/** curl as a receiver: its exit code, body and response head. */
async function curlReceive(url: string) {
  const head = join(work, randomUUID());
  const result = await run('curl', ['-sS', '-D', head, url], { timeoutMs: 30_000 });
  return { code: result.code, body: result.stdout, head: readFileSync(head, 'latin1') };
}

const lastLine = (text: string) => text.trim().split('\n').pop();

describe('a body in pieces, on Redis', () => {
  it('reaches a curl receiver that came first byte-exact, with the whole length as Content-Length', async () => {
    const url = pipeUrl(onRedis);
    const data = randomBytes(3 * 1024 * 1024 + 12_345);
    const receiving = curlReceive(url);
    await delay(200);
    const [first, second, third] = await sendInThreePieces(url, data, [1024 * 1024, 2 * 1024 * 1024 + 7]);
    expect(first!.status).toBe(200);
    // Each piece's transcript ends with the offset the next one continues from, every byte of it committed.
    expect(lastLine(first!.text)).toBe(`[INFO] ${pieceReceivedLine(1024 * 1024)}`);
    expect(lastLine(second!.text)).toBe(`[INFO] ${pieceReceivedLine(2 * 1024 * 1024 + 7)}`);
    expect(second!.text).toContain('Resuming the transfer at byte 1048576.');
    expect(lastLine(third!.text)).toBe('[INFO] All receiver(s) was/were received successfully.');
    const received = await receiving;
    expect(received.code).toBe(0);
    expect(received.head).toMatch(new RegExp(`\r\ncontent-length: ${data.length}\r\n`, 'i'));
    expect(Buffer.compare(received.body, data)).toBe(0);
  }, 30_000);

  it('reaches a fetch receiver that came after the first piece started', async () => {
    const url = pipeUrl(onRedis);
    const data = randomBytes(500_000);
    const sending = sendInThreePieces(url, data, [100_000, 300_000]);
    await delay(300);
    const response = await fetch(url);
    expect(response.headers.get('content-length')).toBe(String(data.length));
    const body = Buffer.from(await response.arrayBuffer());
    expect(Buffer.compare(body, data)).toBe(0);
    const [, , third] = await sending;
    expect(lastLine(third!.text)).toBe('[INFO] All receiver(s) was/were received successfully.');
  }, 30_000);

  it('fails the receiver when the final piece ends short of Upload-Length, and tells the sender', async () => {
    const url = pipeUrl(onRedis);
    const data = randomBytes(300_000);
    const receiving = curlReceive(url);
    await delay(200);
    const [, , third] = await sendInThreePieces(url, data, [100_000, 200_000], data.length + 10);
    expect(lastLine(third!.text)).toBe(
      `[ERROR] The body ended at byte ${data.length}, short of its length of ${data.length + 10} bytes; the transfer failed.`,
    );
    const received = await receiving;
    // No clean end: curl sees the body cut before its Content-Length.
    expect(received.code).not.toBe(0);
    expect(received.body.length).toBeLessThan(data.length + 10);
  }, 30_000);

  it('fails the receiver when a piece goes beyond Upload-Length', async () => {
    const url = pipeUrl(onRedis);
    const data = randomBytes(200_000);
    const receiving = curlReceive(url);
    await delay(200);
    const first = await put(url, data, { 'Upload-Length': '150000', 'Upload-Complete': '?0' });
    expect(lastLine(first.text)).toBe(
      '[ERROR] The body goes on beyond its length of 150000 bytes; the transfer failed.',
    );
    expect((await receiving).code).not.toBe(0);
  }, 30_000);

  it('refuses a resumed piece whose Upload-Length is not the transfer’s, and the transfer goes on', async () => {
    const url = pipeUrl(onRedis);
    const data = randomBytes(200_000);
    const receiving = curlReceive(url);
    await delay(200);
    const common = { 'Upload-Length': String(data.length) };
    await put(url, data.subarray(0, 100_000), { ...common, 'Upload-Complete': '?0' });
    const wrong = await put(`${url}?offset=100000`, data.subarray(100_000), { 'Upload-Length': '999999' });
    expect(wrong.status).toBe(400);
    expect(wrong.text).toBe("[ERROR] Upload-Length is 999999, but this transfer's body is 200000 bytes.\n");
    const right = await put(`${url}?offset=100000`, data.subarray(100_000), common);
    expect(lastLine(right.text)).toBe('[INFO] All receiver(s) was/were received successfully.');
    expect(Buffer.compare((await receiving).body, data)).toBe(0);
  }, 30_000);
});

describe('bad upload headers', () => {
  it.each([
    ['Upload-Complete', '?2', "[ERROR] Upload-Complete should be ?1 or ?0, but it is '?2'.\n"],
    ['Upload-Complete', 'true', "[ERROR] Upload-Complete should be ?1 or ?0, but it is 'true'.\n"],
    ['Upload-Length', '-1', "[ERROR] Upload-Length should be a whole number of bytes, but it is '-1'.\n"],
    ['Upload-Length', '1.5', "[ERROR] Upload-Length should be a whole number of bytes, but it is '1.5'.\n"],
    [
      'Upload-Length',
      '9007199254740993',
      "[ERROR] Upload-Length should be a whole number of bytes, but it is '9007199254740993'.\n",
    ],
    ['Upload-Length', '5', '[ERROR] Content-Length (3) and Upload-Length (5) disagree.\n'],
  ])('%s: %s is refused with 400 and one line', async (name, value, line) => {
    const url = pipeUrl(onRedis);
    const answer = await put(url, new Uint8Array(3), { [name]: value });
    expect(answer.status).toBe(400);
    expect(answer.text).toBe(line);
  });

  it('refuses Upload-Length over the size cap with 413', async () => {
    const answer = await put(pipeUrl(inMemory), new Uint8Array(3), { 'Upload-Length': '1000001' });
    expect(answer.status).toBe(413);
    expect(answer.text).toBe('[ERROR] The body is 1000001 bytes; this server accepts at most 1000000.\n');
  });

  it('refuses a multipart body in pieces', async () => {
    const form = new FormData();
    form.append('file', new Blob(['abc']), 'a.txt');
    const response = await fetch(pipeUrl(onRedis), {
      method: 'PUT',
      body: form,
      headers: { 'Upload-Complete': '?0' },
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toBe(
      '[ERROR] A multipart upload cannot be sent in pieces (Upload-Complete: ?0).\n',
    );
  });

  it('refuses Upload-Length with a multipart body', async () => {
    const form = new FormData();
    form.append('file', new Blob(['abc']), 'a.txt');
    const response = await fetch(pipeUrl(inMemory), {
      method: 'PUT',
      body: form,
      headers: { 'Upload-Length': '3' },
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toBe(
      '[ERROR] Upload-Length is not taken with a multipart body (its part gives its own length).\n',
    );
  });

  it('the in-memory broker refuses Upload-Complete: ?0 with 400, and keeps serving', async () => {
    const url = pipeUrl(inMemory);
    const refused = await put(url, new Uint8Array(3), { 'Upload-Complete': '?0' });
    expect(refused.status).toBe(400);
    expect(refused.text).toBe(
      '[ERROR] Upload-Complete: ?0 needs a broker that holds a transfer between pieces; this one (in memory, or without a grace period) cannot: send the body in one request.\n',
    );
    const receiving = fetch(url).then(async (response) => Buffer.from(await response.arrayBuffer()));
    await delay(100);
    const sent = await put(url, new Uint8Array([1, 2, 3]), { 'Upload-Complete': '?1' });
    expect(lastLine(sent.text)).toBe('[INFO] All receiver(s) was/were received successfully.');
    expect([...(await receiving)]).toEqual([1, 2, 3]);
  });

  it('a Redis broker without a grace period (resumeGraceMs 0) refuses pieces too', async () => {
    const noGrace = await startTestServer({ broker: { redis: redis.url, resumeGraceMs: 0 } });
    try {
      const refused = await put(pipeUrl(noGrace), new Uint8Array(3), { 'Upload-Complete': '?0' });
      expect(refused.status).toBe(400);
      expect((await fetch(pipeUrl(noGrace), { method: 'HEAD' })).headers.get('x-edgepipe-resumable')).toBe(
        '0',
      );
    } finally {
      await noGrace.close();
    }
  });

  it('answers a preflight allowing the upload headers', async () => {
    const response = await fetch(pipeUrl(onRedis), { method: 'OPTIONS' });
    expect(response.headers.get('access-control-allow-headers')).toContain('Upload-Complete, Upload-Length');
  });
});

describe('a streamed body with Upload-Length', () => {
  /** A chunked request body (no Content-Length), as a browser streams one. */
  const streamed = (data: Uint8Array) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < data.length; at += 65_536) controller.enqueue(data.slice(at, at + 65_536));
        controller.close();
      },
    });

  it.each([
    ['in memory', () => inMemory],
    ['on Redis', () => onRedis],
  ])('%s: receivers get it as Content-Length', async (_name, server) => {
    const url = pipeUrl(server());
    const data = randomBytes(300_000);
    const receiving = fetch(url);
    await delay(100);
    const sending = fetch(url, {
      method: 'PUT',
      body: streamed(data),
      headers: { 'Upload-Length': String(data.length) },
      duplex: 'half',
    } as RequestInit);
    const response = await receiving;
    expect(response.headers.get('content-length')).toBe(String(data.length));
    expect(Buffer.compare(Buffer.from(await response.arrayBuffer()), data)).toBe(0);
    expect(lastLine(await (await sending).text())).toBe(
      '[INFO] All receiver(s) was/were received successfully.',
    );
  });

  it('a streamed body shorter than its Upload-Length fails its receivers', async () => {
    const url = pipeUrl(inMemory);
    const data = randomBytes(100_000);
    const receiving = fetch(url);
    await delay(100);
    const sending = fetch(url, {
      method: 'PUT',
      body: streamed(data),
      headers: { 'Upload-Length': String(data.length + 1) },
      duplex: 'half',
    } as RequestInit);
    // No clean end: the response fails, before its head or in its body.
    await expect(receiving.then((response) => response.arrayBuffer())).rejects.toThrow();
    expect(lastLine(await (await sending).text())).toMatch(/^\[ERROR\] The body ended at byte 100000, short/);
  });
});
