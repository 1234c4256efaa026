// The client core's upload modes (src/client/upload-mode.ts) against real servers over real HTTP, with
// Node's fetch (undici takes Blob bodies as a browser does): a body in pieces through a Redis-backed server,
// plain and sealed, with a piece cut mid-way and resumed; a body sent whole through the in-memory broker.
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { nodeChunkCipher } from '../src/cli/node-chunk-cipher.js';
import { createSealer, type KeySource } from '../src/client/format/index.js';
import { type PlainSource, ReplayBuffer } from '../src/client/plain-source.js';
import { receive } from '../src/client/receive.js';
import { send } from '../src/client/send.js';
import { systemClock, type TransferEvent } from '../src/client/transfer-events.js';
import type { UploadMode } from '../src/client/upload-mode.js';
import { plainDecoding, plainEncoding, type SendEncoding } from '../src/client/wire-format.js';
import { sealedDecoding, sealedEncoding } from '../src/client/wire-formats.js';
import { type CuttingProxy, startCuttingProxy } from './helpers/cutting-proxy.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { startTestServer } from './helpers/server.js';

const MiB = 1024 * 1024;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const key: KeySource = { kind: 'passphrase', passphrase: 'pieces of a sealed body' };

let redis: TestRedis;
let onRedis: RunningServer;
let inMemory: RunningServer;
beforeAll(async () => {
  redis = await startTestRedis();
  [onRedis, inMemory] = await Promise.all([
    startTestServer({ broker: { redis: redis.url, resumeGraceMs: 10_000 } }),
    startTestServer(),
  ]);
}, 30_000);
afterAll(async () => {
  await Promise.all([onRedis?.close(), inMemory?.close()]);
  await redis?.stop();
});

/** A file as a browser page has it: known length, readable from any offset, sliced without reading. */
function fileSource(data: Uint8Array<ArrayBuffer>, slices: Array<[number, number]> = []): PlainSource {
  return {
    length: data.byteLength,
    from: (offset) => streamOf(data.subarray(offset)),
    blob: (start, end) => {
      slices.push([start, end]);
      return new Blob([data.subarray(start, end)]);
    },
  };
}

function streamOf(data: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= data.byteLength) return controller.close();
      controller.enqueue(data.slice(at, at + 64 * 1024));
      at += 64 * 1024;
    },
  });
}

/** One request the sender made, as it made it. */
interface Sent {
  readonly method: string;
  readonly offset: string | null;
  readonly body: 'blob' | 'stream' | 'none';
  readonly size: number | undefined;
  readonly complete: string | null;
  readonly length: string | null;
}

/** A fetch that records the requests it makes. */
function recording(log: Sent[]): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    const body = init?.body;
    log.push({
      method: init?.method ?? 'GET',
      offset: new URL(String(input)).searchParams.get('offset'),
      body: body instanceof Blob ? 'blob' : body ? 'stream' : 'none',
      size: body instanceof Blob ? body.size : undefined,
      complete: headers.get('upload-complete'),
      length: headers.get('upload-length'),
    });
    return globalThis.fetch(input, init);
  };
}

const basics = (url: string, events: TransferEvent[] = [], log: Sent[] = []) => ({
  url: new URL(url),
  headers: [] as Array<[string, string]>,
  fetch: recording(log),
  retry: { baseMs: 50, capMs: 300, budgetMs: 15_000 },
  stallMs: 15_000,
  clock: systemClock,
  onEvent: (event: TransferEvent) => events.push(event),
});

/** Receives a body with the client core; its plaintext and the Content-Length it was announced with. */
async function receiveAll(url: string, sealed: boolean) {
  const chunks: Uint8Array[] = [];
  const result = await receive({
    ...basics(url),
    begin: async () => ({
      sink: { write: async (chunk) => void chunks.push(chunk.slice()) },
      decoding: sealed ? sealedDecoding(key, undefined, undefined, nodeChunkCipher) : plainDecoding,
    }),
  });
  return { data: Buffer.concat(chunks), wireLength: result.meta.wireLength };
}

async function encodingOf(sealed: boolean): Promise<SendEncoding> {
  return sealed ? sealedEncoding(await createSealer(key, { cipher: nodeChunkCipher })) : plainEncoding;
}

/** Sends `source` through `sendVia` to a client-core receiver on `recvVia`, the receiver first. */
async function transfer(
  sendVia: string,
  recvVia: string,
  source: PlainSource,
  sealed: boolean,
  upload: UploadMode,
) {
  const path = `/modes/${randomUUID()}`;
  const events: TransferEvent[] = [];
  const log: Sent[] = [];
  const receiving = receiveAll(`${recvVia}${path}`, sealed);
  await delay(100);
  const encoding = await encodingOf(sealed);
  const sent = await send({ ...basics(`${sendVia}${path}`, events, log), source, encoding, upload });
  const puts = log.filter((request) => request.method === 'PUT');
  const heads = log.filter((request) => request.method === 'HEAD');
  const wireLength = encoding.wireLength(source.length);
  return { sent, received: await receiving, events, wireLength, puts, heads };
}

const pieces = (pieceBytes: number): UploadMode => ({ kind: 'pieces', pieceBytes });

describe('a body in pieces, on Redis', () => {
  it.each([
    ['plain', false],
    ['sealed', true],
  ])(
    '%s: a file in pieces of 1 MiB reaches the receiver byte-exact, with its length',
    async (_name, sealed) => {
      const data = randomBytes(5 * MiB + 54_321);
      const slices: Array<[number, number]> = [];
      const { sent, received, events, wireLength, puts, heads } = await transfer(
        onRedis.url,
        onRedis.url,
        fileSource(data, slices),
        sealed,
        pieces(MiB),
      );
      expect(Buffer.compare(received.data, data)).toBe(0);
      expect(received.wireLength).toBe(wireLength);
      // Six Blob pieces of at most 1 MiB, all but the last marked incomplete, each telling the whole
      // length; each continues at once (one HEAD, the first probe), the first one without an offset.
      expect(puts).toHaveLength(6);
      expect(heads).toHaveLength(1);
      for (const put of puts) {
        expect(put).toMatchObject({ body: 'blob', length: String(wireLength) });
        expect(put.size).toBeLessThanOrEqual(MiB);
      }
      expect(puts.map((put) => put.complete)).toEqual(['?0', '?0', '?0', '?0', '?0', null]);
      expect(puts[0]!.offset).toBeNull();
      expect(puts.slice(1).every((put) => put.offset !== null)).toBe(true);
      expect(sent.resumes).toBe(0);
      expect(sent.summary).toBe('All receiver(s) received everything.');
      if (!sealed) {
        // A plain file goes up as slices of itself, one per piece: nothing of it is read into memory.
        expect(slices).toEqual(
          [0, 1, 2, 3, 4, 5].map((i) => [i * MiB, Math.min(data.length, (i + 1) * MiB)]),
        );
      }
      // The progress bar moves per piece; no piece counts as a resume or a new wait.
      const progress = events.filter((e) => e.type === 'progress').map((e) => e.bytes);
      expect(progress.length).toBeGreaterThanOrEqual(5);
      expect(events.filter((e) => e.type === 'resumed')).toEqual([]);
      expect(events.filter((e) => e.type === 'waiting')).toHaveLength(1);
    },
    60_000,
  );

  it('a stream of unknown length in pieces: the last piece tells its length', async () => {
    const data = randomBytes(2 * MiB + 999);
    const source = new ReplayBuffer(streamOf(data), 8 * MiB);
    const { received, puts } = await transfer(onRedis.url, onRedis.url, source, false, pieces(512 * 1024));
    expect(Buffer.compare(received.data, data)).toBe(0);
    expect(puts.map((put) => put.complete)).toEqual(['?0', '?0', '?0', '?0', null]);
    expect(puts.map((put) => put.length)).toEqual([null, null, null, null, String(data.length)]);
  }, 60_000);

  it.each([
    ['plain', false],
    ['sealed', true],
  ])(
    '%s: a piece cut mid-way resumes at the committed offset, byte-exact',
    async (_name, sealed) => {
      const data = randomBytes(5 * MiB + 777);
      const target = { host: '127.0.0.1', port: Number(new URL(onRedis.url).port) };
      // The first two connections are each cut 1.5 MiB up: inside the second piece a connection carries.
      const proxy: CuttingProxy = await startCuttingProxy({
        target,
        plan: (index) => (index < 2 ? { cutUpAt: 1.5 * MiB } : undefined),
      });
      try {
        const { sent, received, puts, heads } = await transfer(
          proxy.url,
          onRedis.url,
          fileSource(data),
          sealed,
          pieces(MiB),
        );
        expect(Buffer.compare(received.data, data)).toBe(0);
        expect(proxy.cuts).toBeGreaterThanOrEqual(1);
        // A broken piece asks HEAD where to continue; every request is still a piece.
        expect(heads.length).toBeGreaterThanOrEqual(2);
        expect(puts.every((put) => put.body === 'blob' && put.size! <= MiB)).toBe(true);
        expect(sent.resumes).toBeGreaterThanOrEqual(1);
      } finally {
        await proxy.close();
      }
    },
    60_000,
  );

  it('a piece the browser sent again by itself after its connection broke continues the transfer', async () => {
    // Chromium sends a request again, body and all, when a kept-alive connection broke before the answer's
    // head came. The copy meets the transfer its first copy opened (409): the sender must continue it.
    const data = randomBytes(3 * MiB + 99);
    const target = { host: '127.0.0.1', port: Number(new URL(onRedis.url).port) };
    const proxy = await startCuttingProxy({ target, plan: () => ({ cutUpAt: 1.5 * MiB }) });
    const path = `/modes/${randomUUID()}`;
    const log: Sent[] = [];
    const events: TransferEvent[] = [];
    let resent = 0;
    const recorded = recording(log);
    const resending: typeof fetch = async (input, init) => {
      if (init?.method !== 'PUT' || log.some((sent) => sent.method === 'PUT')) return recorded(input, init);
      const url = new URL(String(input));
      try {
        // The first PUT through the proxy, cut 1.5 MiB up; like the browser, nothing shows before the end.
        const response = await recorded(`${proxy.url}${url.pathname}${url.search}`, init);
        return new Response(await response.arrayBuffer(), response);
      } catch {
        resent += 1;
        return recorded(input, init);
      }
    };
    try {
      const receiving = receiveAll(`${onRedis.url}${path}`, false);
      await delay(100);
      const sent = await send({
        ...basics(`${onRedis.url}${path}`, events),
        fetch: resending,
        source: fileSource(data),
        encoding: plainEncoding,
        upload: pieces(2 * MiB),
      });
      expect(Buffer.compare((await receiving).data, data)).toBe(0);
      expect(resent).toBe(1);
      expect(sent.resumes).toBe(1);
      const puts = log.filter((request) => request.method === 'PUT');
      // The first copy and the browser's own, both without an offset; then the rest at offsets.
      expect(puts.map((put) => put.offset === null)).toEqual([true, true, false]);
      expect(
        events.filter((e) => e.type === 'notice' && e.text.startsWith("continuing this sender's")),
      ).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('a second sender on a running transfer is still refused: its 409 is not taken for its own', async () => {
    const path = `${onRedis.url}/modes/${randomUUID()}`;
    const receiving = fetch(path);
    await delay(100);
    // The first sender stays connected, its body open.
    let hold!: ReadableStreamDefaultController<Uint8Array>;
    const first = fetch(path, {
      method: 'PUT',
      body: new ReadableStream<Uint8Array>({
        start: (controller) => {
          hold = controller;
          controller.enqueue(new Uint8Array(1024));
        },
      }),
      duplex: 'half',
    } as RequestInit);
    await receiving;
    const refused = await send({
      ...basics(path),
      source: fileSource(randomBytes(MiB)),
      encoding: plainEncoding,
      upload: pieces(MiB / 2),
    }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'refused', status: 409 });
    hold.close();
    await (await first).text();
  }, 60_000);
});

describe('a body sent whole', () => {
  it.each([
    ['plain', false],
    ['sealed', true],
  ])(
    '%s: through the in-memory broker, byte-exact, with its length',
    async (_name, sealed) => {
      const data = randomBytes(3 * MiB + 5);
      const slices: Array<[number, number]> = [];
      const { received, wireLength, puts } = await transfer(
        inMemory.url,
        inMemory.url,
        fileSource(data, slices),
        sealed,
        { kind: 'whole' },
      );
      expect(Buffer.compare(received.data, data)).toBe(0);
      expect(received.wireLength).toBe(wireLength);
      expect(puts).toMatchObject([
        { body: 'blob', size: wireLength, complete: null, length: String(wireLength) },
      ]);
      if (!sealed) expect(slices).toEqual([[0, data.length]]);
    },
    60_000,
  );

  it('pieces on a server that cannot resume go up whole, with a notice', async () => {
    const data = randomBytes(MiB);
    const { received, events, puts } = await transfer(
      inMemory.url,
      inMemory.url,
      fileSource(data),
      false,
      pieces(256 * 1024),
    );
    expect(Buffer.compare(received.data, data)).toBe(0);
    expect(puts).toMatchObject([{ body: 'blob', size: data.length, complete: null }]);
    expect(events).toContainEqual({
      type: 'notice',
      text: 'this server cannot resume: the body goes up whole, not in pieces',
    });
  }, 60_000);
});

describe('a streamed body', () => {
  it('tells its length in Upload-Length too (a browser drops Content-Length on a stream)', async () => {
    const seen: Array<string | null> = [];
    const path = `${inMemory.url}/modes/${randomUUID()}`;
    const data = randomBytes(100_000);
    const receiving = receiveAll(path, false);
    await delay(100);
    await send({
      ...basics(path),
      fetch: (input, init) => {
        if (init?.method === 'PUT') seen.push(new Headers(init.headers).get('upload-length'));
        return globalThis.fetch(input, init);
      },
      source: fileSource(data),
      encoding: plainEncoding,
    });
    expect(Buffer.compare((await receiving).data, data)).toBe(0);
    expect(seen).toEqual([String(data.length)]);
  });
});
