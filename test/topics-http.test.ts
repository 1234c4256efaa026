import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeys, signedQuery } from '../src/access/capability-url.js';
import type { RunningServer } from '../src/adapter/node/serve.js';
import type { ConfigInput } from '../src/config.js';
import { RECORDS_TYPE } from '../src/protocol/topic-layout.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { startTestServer } from './helpers/server.js';

const run = promisify(execFile);

/** curl's body and status (`-w`), never failing on a 4xx. */
async function curl(...args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args]);
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

const SECRET = 'topics-test-secret-0123456789-abcdef';
const DEVICE_TOKEN = 'device-token-0123456789';
const CONSUMER_TOKEN = 'consumer-token-0123456789';

const LIMITS: ConfigInput['topics'] = {
  maxRecordBytes: 100,
  maxBatchBytes: 4096,
  maxBatchRecords: 5,
  maxWaitMs: 5000,
};

function framed(records: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(records.reduce((sum, record) => sum + 4 + record.byteLength, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const record of records) {
    view.setUint32(at, record.byteLength);
    out.set(record, at + 4);
    at += 4 + record.byteLength;
  }
  return out;
}

const lines = (body: string) =>
  body
    .split('\n')
    .filter((line) => line !== '')
    .map(
      (line) =>
        JSON.parse(line) as { topic: string; id: string; data?: string; data64?: string; deliveries: number },
    );

/** Reads a streaming response until `done(text so far)` holds (bounded by a timeout). */
async function readUntil(response: Response, done: (text: string) => boolean, ms = 5000): Promise<string> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + ms;
  try {
    while (!done(text)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(text)}`);
      const chunk = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(text)}`)), left),
        ),
      ]);
      if (chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text;
}

const backends: Array<[string, () => Promise<{ broker: ConfigInput['broker']; stop: () => Promise<void> }>]> =
  [
    ['memory', async () => ({ broker: {}, stop: async () => {} })],
    [
      'redis',
      async () => {
        const redis: TestRedis = await startTestRedis();
        return { broker: { redis: redis.url }, stop: () => redis.stop() };
      },
    ],
  ];

describe.each(backends)('topics over HTTP: %s', (_name, backend) => {
  let open: RunningServer;
  let stopBackend: () => Promise<void>;
  let broker: ConfigInput['broker'];
  beforeAll(async () => {
    const started = await backend();
    broker = started.broker;
    stopBackend = started.stop;
    open = await startTestServer({ broker, topics: LIMITS });
  });
  afterAll(async () => {
    await open?.close();
    await stopBackend?.();
  });
  const url = (path: string) => `${open.url}/_/topics/${path}`;

  it('appends with curl and reads with curl', async () => {
    const appended = await curl('--data-binary', 'one\ntwo\n', url('curl/a'));
    expect(appended.status).toBe(201);
    expect(JSON.parse(appended.body)).toMatchObject({ topic: 'curl/a', count: 2, replay: false });
    const read = await curl(url('curl/a?group=g&consumer=c&wait=0'));
    expect(read.status).toBe(200);
    expect(lines(read.body).map((line) => line.data)).toEqual(['one', 'two']);
    const ids = lines(read.body).map((line) => line.id);
    const ack = await curl('--data-binary', `${ids.join('\n')}\n`, url('curl/a:ack?group=g'));
    expect(JSON.parse(ack.body)).toEqual({ acked: 2 });
    expect((await curl(url('curl/a?group=g&consumer=c&wait=0'))).body).toBe('');
  });

  it('answers a batch sent again with the same Idempotency-Key with the first ids, 200', async () => {
    const send = () => curl('--data-binary', 'x', '-H', 'Idempotency-Key: dev-1:7', url('idem/a'));
    const first = await send();
    const again = await send();
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(JSON.parse(again.body)).toEqual({ ...JSON.parse(first.body), replay: true });
  });

  it('takes a gzip body, and bounds it decompressed', async () => {
    const body = gzipSync(Buffer.from('g1\ng2\n'));
    const response = await fetch(url('gzip/a'), {
      method: 'POST',
      body,
      headers: { 'Content-Encoding': 'gzip' },
    });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ count: 2 });
    // 1 MiB of newlines is 1 KiB compressed: refused by its decompressed size.
    const bomb = gzipSync(Buffer.alloc(1024 * 1024, 0x0a));
    expect(bomb.byteLength).toBeLessThan(LIMITS!.maxBatchBytes!);
    const refused = await fetch(url('gzip/a'), {
      method: 'POST',
      body: bomb,
      headers: { 'Content-Encoding': 'gzip' },
    });
    expect(refused.status).toBe(413);
    expect(await refused.text()).toMatch(/^\[ERROR\] The batch is larger than 4096 bytes decompressed\.\n$/);
    const broken = await fetch(url('gzip/a'), {
      method: 'POST',
      body: 'not gzip',
      headers: { 'Content-Encoding': 'gzip' },
    });
    expect(broken.status).toBe(400);
    const other = await fetch(url('gzip/a'), {
      method: 'POST',
      body: 'x',
      headers: { 'Content-Encoding': 'br' },
    });
    expect(other.status).toBe(415);
  });

  it('takes length-prefixed binary records, and gives back what is not UTF-8 as data64', async () => {
    const binary = new Uint8Array([0xff, 0x00, 0x0a]);
    const body = framed([new TextEncoder().encode('text'), binary, new Uint8Array(0)]);
    const response = await fetch(url('bin/a'), {
      method: 'POST',
      body: new Blob([body as BlobPart]),
      headers: { 'Content-Type': RECORDS_TYPE },
    });
    expect(response.status).toBe(201);
    const read = lines(await (await fetch(url('bin/a?group=g&consumer=c&wait=0'))).text());
    expect(read.map((line) => line.data ?? `64:${line.data64}`)).toEqual(['text', '64:/wAK', '']);
    const cut = await fetch(url('bin/a'), {
      method: 'POST',
      body: new Blob([body.slice(0, 6) as BlobPart]),
      headers: { 'Content-Type': RECORDS_TYPE },
    });
    expect(cut.status).toBe(400);
    expect(await cut.text()).toMatch(/ends inside a record/);
  });

  it('refuses what breaks a bound with a 4xx and one [ERROR] line', async () => {
    const post = (path: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
      fetch(url(path), { method: 'POST', body: new Blob([body as BlobPart]), headers });
    const cases: Array<[Promise<Response>, number, RegExp]> = [
      [post('b/a', 'x'.repeat(101)), 413, /record is larger than 100 bytes/],
      [post('b/a', 'a\nb\nc\nd\ne\nf\n'), 413, /more than 5 records/],
      [post('b/a', 'y\n'.repeat(2049)), 413, /larger than 4096 bytes/],
      [post('b/a', '\n\n'), 400, /holds no record/],
      [post('b/*', 'x'), 400, /Only a read/],
      [post('b/a', 'x', { 'Idempotency-Key': 'has space' }), 400, /Idempotency-Key/],
      [post('b/a:nope', 'x'), 400, /Unknown action/],
      [post('bad name', 'x'), 400, /not a topic name/],
      [post('b/a%2Fc', 'x'), 400, /not a topic name/],
      [post('b/.', 'x'), 400, /not a topic name/],
      [fetch(url('b/a?consumer=c')), 400, /group is required/],
      [fetch(url('b/a?group=g&consumer=c&count=0')), 400, /count should/],
      [fetch(url('b/a?group=g&consumer=c&wait=999999')), 400, /wait should be a whole number from 0 to 5000/],
      [fetch(url('b/a?group=g&consumer=c&start=middle')), 400, /start should/],
      [fetch(url('b/a'), { method: 'PUT', body: 'x' }), 405, /Unsupported method/],
      [post('b/a:ack?group=g', 'not-an-id\n'), 400, /record id/],
      [post('b/*:ack?group=g', 'other/t 1-0\n'), 400, /not a topic below b/],
    ];
    for (const [pending, status, reason] of cases) {
      const response = await pending;
      const text = await response.text();
      expect({ status: response.status, text }).toMatchObject({
        status,
        text: expect.stringMatching(reason),
      });
      expect(text).toMatch(/^\[ERROR\] [^\n]+\n$/);
    }
  });

  it('refuses a new topic past maxTopics with 507', async () => {
    // A server of its own: in memory the bound is the whole server's.
    const small = await startTestServer({ broker, topics: { ...LIMITS, maxTopics: 2 } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push((await curl('--data-binary', 'x', `${small.url}/_/topics/many/t${i}`)).status);
      }
      expect(statuses).toEqual([201, 201, 507]);
      const refused = await curl('--data-binary', 'x', `${small.url}/_/topics/many/t9`);
      expect(refused.body).toBe('[ERROR] Too many topics on this server (topics.maxTopics).\n');
      expect((await curl('--data-binary', 'y', `${small.url}/_/topics/many/t0`)).status).toBe(201);
    } finally {
      await small.close();
    }
  });

  it('tells the bounds in HEAD headers', async () => {
    await curl('--data-binary', 'h1\nh22\n', url('head/a'));
    const response = await fetch(url('head/a'), { method: 'HEAD' });
    expect(response.status).toBe(200);
    const h = (name: string) => response.headers.get(name);
    expect([h('Topic-Records'), h('Topic-Bytes'), h('Topic-Dropped')]).toEqual(['2', '5', '0']);
    expect(h('Topic-First-Id')).toMatch(/^\d+-0$/);
    expect(h('Topic-Last-Id')).toMatch(/^\d+-1$/);
    expect([h('Topic-Max-Records'), h('Topic-Max-Bytes'), h('Topic-Max-Age')]).toEqual([
      '100000',
      String(64 * 1024 * 1024),
      String(7 * 24 * 3600),
    ]);
    const none = await fetch(url('head/none'), { method: 'HEAD' });
    expect(none.headers.get('Topic-Records')).toBe('0');
    expect(none.headers.get('Topic-First-Id')).toBeNull();
  });

  it('answers a long-poll when a record arrives', async () => {
    const started = Date.now();
    const reading = fetch(url('poll/a?group=g&consumer=c&wait=4000'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await curl('--data-binary', 'late', url('poll/a'));
    const body = await (await reading).text();
    expect(lines(body).map((line) => line.data)).toEqual(['late']);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('streams records appended after connecting (follow=1 and SSE)', async () => {
    const follow = await fetch(url('stream/*?group=f&consumer=c&follow=1'));
    expect(follow.headers.get('content-type')).toBe('application/x-ndjson');
    const sse = await fetch(url('stream/*?group=s&consumer=c'), { headers: { Accept: 'text/event-stream' } });
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await curl('--data-binary', 'live', url('stream/a'));
    const followed = await readUntil(follow, (text) => text.includes('"live"'));
    expect(lines(followed)[0]).toMatchObject({ topic: 'stream/a', data: 'live', deliveries: 1 });
    const events = await readUntil(sse, (text) => text.includes('"live"'));
    expect(events).toMatch(
      /event: record\nid: stream\/a \d+-0\ndata: \{"topic":"stream\/a","id":"\d+-0","data":"live","deliveries":1\}\n\n/,
    );
  });

  it('stops reading for a follow stream whose client left', async () => {
    const aborted = new AbortController();
    const follow = await fetch(url('gone/*?group=g&consumer=left&follow=1'), { signal: aborted.signal });
    expect(follow.status).toBe(200);
    aborted.abort();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await curl('--data-binary', 'after', url('gone/a'));
    // Time for a live stream to take it (Redis: a namespace read looks for new topics every 250 ms).
    await new Promise((resolve) => setTimeout(resolve, 600));
    // Had the stream still read, the record would be pending on "left", not handed to "other".
    const read = await curl(url('gone/*?group=g&consumer=other&wait=2000'));
    expect(lines(read.body).map((line) => line.data)).toEqual(['after']);
  });

  describe('with tokens', () => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await startTestServer({
        broker,
        topics: LIMITS,
        auth: {
          mode: 'token',
          tokens: [
            { name: 'device', token: DEVICE_TOKEN, scopes: ['send'], prefix: '/_/topics/fleet/d1' },
            { name: 'consumer', token: CONSUMER_TOKEN, scopes: ['recv'], prefix: '/_/topics/fleet' },
          ],
        },
      });
    });
    afterAll(async () => {
      await server?.close();
    });
    const at = (path: string) => `${server.url}/_/topics/${path}`;
    const as = (token: string) => ['-H', `Authorization: Bearer ${token}`];

    it('lets a device append to its topic only, and a consumer read its namespace only', async () => {
      expect((await curl(...as(DEVICE_TOKEN), '--data-binary', 'm', at('fleet/d1'))).status).toBe(201);
      const other = await curl(...as(DEVICE_TOKEN), '--data-binary', 'm', at('fleet/d2'));
      expect(other.status).toBe(403);
      expect(other.body).toMatch(
        /^\[ERROR\] The token of device admits pipes under \/_\/topics\/fleet\/d1 only\./,
      );
      const readWithSend = await curl(...as(DEVICE_TOKEN), at('fleet/d1?group=g&consumer=c&wait=0'));
      expect(readWithSend.status).toBe(403);
      expect(readWithSend.body).toMatch(/may not receive/);
      expect((await curl(at('fleet/d1?group=g&consumer=c&wait=0'))).status).toBe(401);
      const read = await curl(...as(CONSUMER_TOKEN), at('fleet/*?group=g&consumer=c&wait=0'));
      expect(read.status).toBe(200);
      expect(lines(read.body).map((line) => line.data)).toEqual(['m']);
      const ack = await curl(
        ...as(CONSUMER_TOKEN),
        '--data-binary',
        `fleet/d1 ${lines(read.body)[0]!.id}`,
        at('fleet/*:ack?group=g'),
      );
      expect(JSON.parse(ack.body)).toEqual({ acked: 1 });
      expect((await curl(...as(CONSUMER_TOKEN), '--data-binary', 'm', at('fleet/d1'))).status).toBe(403);
      expect((await curl(...as(CONSUMER_TOKEN), at('fleetx/*?group=g&consumer=c&wait=0'))).status).toBe(403);
      expect((await curl(...as(DEVICE_TOKEN), '-I', at('fleet/d1'))).status).toBe(200);
    });
  });

  describe('with signed URLs', () => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await startTestServer({ broker, topics: LIMITS, auth: { mode: 'signed', secrets: [SECRET] } });
    });
    afterAll(async () => {
      await server?.close();
    });
    const signed = async (path: string, scope: 'send' | 'recv', prefix: boolean) => {
      const query = await signedQuery(new SigningKeys([SECRET]), {
        scope,
        path,
        prefix,
        expiresAt: Math.floor(Date.now() / 1000) + 600,
      });
      return query.toString();
    };

    it('admits a device URL for its topic and a consumer URL for the namespace', async () => {
      const device = await signed('/_/topics/sig/d1', 'send', false);
      expect((await curl('--data-binary', 's', `${server.url}/_/topics/sig/d1?${device}`)).status).toBe(201);
      expect((await curl('--data-binary', 's', `${server.url}/_/topics/sig/d2?${device}`)).status).toBe(403);
      expect((await curl('--data-binary', 's', `${server.url}/_/topics/sig/d1`)).status).toBe(401);
      const consumer = await signed('/_/topics/sig', 'recv', true);
      const read = await curl(`${server.url}/_/topics/sig/*?${consumer}&group=g&consumer=c&wait=0`);
      expect(read.status).toBe(200);
      expect(lines(read.body).map((line) => line.data)).toEqual(['s']);
      const ack = await curl(
        '--data-binary',
        `sig/d1 ${lines(read.body)[0]!.id}`,
        `${server.url}/_/topics/sig/*:ack?${consumer}&group=g`,
      );
      expect(JSON.parse(ack.body)).toEqual({ acked: 1 });
      expect((await curl('--data-binary', 's', `${server.url}/_/topics/sig/d1?${consumer}`)).status).toBe(
        403,
      );
    });
  });
});
