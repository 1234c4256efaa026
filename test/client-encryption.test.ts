// End-to-end encryption through real processes: edgepipe send --passphrase/--key-file to edgepipe recv,
// a wrong key, a byte flipped in transit by a proxy, and sealed streams cut at and inside a chunk.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FRAMED_CONTENT_TYPE,
  HEADER_BYTES,
  SEALED_CHUNK,
  SEALED_CONTENT_TYPE,
} from '../src/client/format/index.js';
import { startCuttingProxy } from './helpers/cutting-proxy.js';
import { type RunResult, repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const work = mkdtempSync(join(tmpdir(), 'edgepipe-sealed-'));
const keyFile = join(work, 'key');
const otherKeyFile = join(work, 'other-key');
writeFileSync(keyFile, 'a1'.repeat(32));
writeFileSync(otherKeyFile, 'b2'.repeat(32));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const QUICK = ['--retry-base', '50ms', '--retry-cap', '300ms', '--retry-for', '10s'];

function edgepipe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], {
    env: { EDGEPIPE_STATE_DIR: join(work, 'state'), ...env },
    timeoutMs: 60_000,
  });
}

/** Runs a receiver, then a sender a moment later; resolves with both results. */
async function pair(recvArgs: string[], sendArgs: string[], env: NodeJS.ProcessEnv = {}) {
  const receiving = edgepipe(['recv', ...recvArgs, ...QUICK], env);
  await delay(300);
  const sent = await edgepipe(['send', ...sendArgs, ...QUICK], env);
  return { sent, received: await receiving };
}

/** The sealed stream of `data` under `keyFile`, as curl receives it from `edgepipe send`. */
async function sealedBytes(url: string, data: Uint8Array): Promise<Buffer> {
  const input = join(work, `plain-${data.byteLength}`);
  writeFileSync(input, data);
  const receiving = run('curl', ['-sS', '-f', url]);
  await delay(300);
  const sent = await edgepipe(['send', url, input, '--key-file', keyFile, ...QUICK]);
  expect(sent.code, sent.stderr).toBe(0);
  const received = await receiving;
  expect(received.code).toBe(0);
  return received.stdout;
}

describe('end-to-end encryption, in memory', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await spawnServer();
  });
  afterAll(() => server?.kill());

  it('a passphrase round trip is byte-exact; the broker never sees the plaintext', async () => {
    const data = randomBytes(3 * 65536 + 123);
    const input = join(work, 'pass.in');
    const output = join(work, 'pass.out');
    writeFileSync(input, data);
    const env = { EDGEPIPE_PASSPHRASE: 'correct horse battery staple' };
    const { sent, received } = await pair(
      [`${server.url}/e/pass`, output, '--passphrase', '--sha256'],
      [`${server.url}/e/pass`, input, '--passphrase', '--sha256'],
      env,
    );
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(sha256(readFileSync(output))).toBe(sha256(data));
    expect(received.stderr).toContain(`sha256 ${sha256(data)}`);
    // What went over the wire is not the plaintext: a curl receiver gets the sealed stream.
    const wire = await sealedBytes(`${server.url}/e/wire`, data);
    expect(wire.subarray(0, 8).toString()).toBe('EPSEALED');
    expect(wire.includes(data.subarray(0, 64))).toBe(false);
  });

  it('a wrong key fails with exit 5 before a byte is written', async () => {
    const data = randomBytes(5 * 65536);
    const input = join(work, 'wrong.in');
    const output = join(work, 'wrong.out');
    writeFileSync(input, data);
    const { received } = await pair(
      [`${server.url}/e/wrong`, output, '--key-file', otherKeyFile],
      [`${server.url}/e/wrong`, input, '--key-file', keyFile],
    );
    expect(received.code, received.stderr).toBe(5);
    expect(received.stderr).toMatch(/wrong passphrase or key/);
    expect(existsSync(output) ? statSync(output).size : 0).toBe(0);
  });

  it('a sealed body without a key, and a key for a plain body, are refused with exit 5', async () => {
    const input = join(work, 'kinds.in');
    writeFileSync(input, randomBytes(1000));
    const noKey = await pair(
      [`${server.url}/e/nokey`, '-'],
      [`${server.url}/e/nokey`, input, '--key-file', keyFile],
    );
    expect(noKey.received.code).toBe(5);
    expect(noKey.received.stderr).toMatch(/encrypted this body: give --passphrase or --key-file/);
    expect(noKey.received.stdout.length).toBe(0);
    const plain = await pair(
      [`${server.url}/e/plain`, '-', '--key-file', keyFile],
      [`${server.url}/e/plain`, input],
    );
    expect(plain.received.code).toBe(5);
    expect(plain.received.stderr).toMatch(/did not encrypt/);
  });

  it('one byte flipped in transit fails with exit 5; only the chunks before it are written', async () => {
    const data = randomBytes(6 * 65536);
    const input = join(work, 'flip.in');
    const output = join(work, 'flip.out');
    writeFileSync(input, data);
    // Connection 0 is the receiver's HEAD; connection 1 its GET, whose byte 300,000 (in chunk 4) flips.
    const proxy = await startCuttingProxy({
      target: { host: '127.0.0.1', port: Number(new URL(server.url).port) },
      plan: (index) => (index === 1 ? { flipDownAt: 300_000 } : undefined),
    });
    try {
      const { received } = await pair(
        [`${proxy.url}/e/flip`, output, '--key-file', keyFile],
        [`${server.url}/e/flip`, input, '--key-file', keyFile],
      );
      expect(proxy.flips).toBe(1);
      expect(received.code, received.stderr).toBe(5);
      expect(received.stderr).toMatch(/altered|authentication/);
      const written = readFileSync(output);
      expect(written.length % 65536).toBe(0);
      expect(written.length).toBeLessThan(300_000);
      expect(written.equals(data.subarray(0, written.length))).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it.each([
    ['at a chunk boundary', (length: number) => HEADER_BYTES + 2 * SEALED_CHUNK + (0 * length) / length],
    ['inside a chunk', () => HEADER_BYTES + 2 * SEALED_CHUNK + 1000],
    ['inside the end marker', (length: number) => length - 3],
  ])('a sealed stream cut %s fails with exit 5, keeping its whole chunks', async (_where, cutAt) => {
    const data = randomBytes(4 * 65536 + 77);
    const sealed = await sealedBytes(`${server.url}/e/seal-${cutAt(1)}`, data);
    const cut = sealed.subarray(0, cutAt(sealed.length));
    const truncated = join(work, 'truncated.sealed');
    writeFileSync(truncated, cut);
    const output = join(work, 'truncated.out');
    const receiving = edgepipe(['recv', `${server.url}/e/cut`, output, '--key-file', keyFile, ...QUICK]);
    await delay(300);
    const curlSent = await run('curl', [
      '-sS',
      '-f',
      '-H',
      `Content-Type: ${SEALED_CONTENT_TYPE}`,
      '-T',
      truncated,
      `${server.url}/e/cut`,
    ]);
    expect(curlSent.code).toBe(0);
    const received = await receiving;
    // Only whole chunks that authenticated are written: two before a cut in the third, four before a cut in
    // the end marker (which is what says the last chunk was the last).
    const kept = cutAt(sealed.length) >= sealed.length - 8 ? 4 * 65536 : 2 * 65536;
    expect(received.code, received.stderr).toBe(5);
    expect(received.stderr).toMatch(/truncated|before its last chunk/);
    expect(readFileSync(output).equals(data.subarray(0, kept))).toBe(true);
  });
});

describe('framed bodies (--framed), in memory', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await spawnServer();
  });
  afterAll(() => server?.kill());

  it('round trip: the receiver recognises the framing by its Content-Type, with no flag', async () => {
    const data = randomBytes(2 * 65536 + 5);
    const input = join(work, 'framed.in');
    writeFileSync(input, data);
    const { sent, received } = await pair(
      [`${server.url}/f/ok`, '-'],
      [`${server.url}/f/ok`, input, '--framed'],
    );
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(received.stdout.equals(data)).toBe(true);
  });

  it('a framed body that ends cleanly but early (as a proxy may end it) fails with exit 5', async () => {
    const data = randomBytes(3 * 65536);
    const input = join(work, 'framed-src.in');
    writeFileSync(input, data);
    const receiving = run('curl', ['-sS', '-f', `${server.url}/f/raw`]);
    await delay(300);
    expect((await edgepipe(['send', `${server.url}/f/raw`, input, '--framed', ...QUICK])).code).toBe(0);
    const framed = (await receiving).stdout;
    const cut = join(work, 'framed-cut');
    writeFileSync(cut, framed.subarray(0, framed.length - 1000));
    const receiver = edgepipe(['recv', `${server.url}/f/cut`, '-', ...QUICK]);
    await delay(300);
    await run('curl', [
      '-sS',
      '-H',
      `Content-Type: ${FRAMED_CONTENT_TYPE}`,
      '-T',
      cut,
      `${server.url}/f/cut`,
    ]);
    const received = await receiver;
    expect(received.code, received.stderr).toBe(5);
    expect(received.stdout.equals(data.subarray(0, 2 * 65536))).toBe(true);
  });
});

describe('end-to-end encryption on Redis: a cut sealed stream is asked for again, then refused', () => {
  let redis: TestRedis;
  let server: ServerProcess;
  beforeAll(async () => {
    redis = await startTestRedis();
    server = await spawnServer(['--redis', redis.url]);
  });
  afterAll(async () => {
    server?.kill();
    await redis?.stop();
  });

  it('a sealed body that really ends mid-chunk is exit 5 after one resume finds the same end', async () => {
    const data = randomBytes(3 * 65536);
    const sealed = await sealedBytes(`${server.url}/r/seal`, data);
    const truncated = join(work, 'redis-truncated.sealed');
    writeFileSync(truncated, sealed.subarray(0, HEADER_BYTES + SEALED_CHUNK + 500));
    const receiving = edgepipe(['recv', `${server.url}/r/cut`, '-', '--key-file', keyFile, ...QUICK]);
    await delay(300);
    await run('curl', [
      '-sS',
      '-H',
      `Content-Type: ${SEALED_CONTENT_TYPE}`,
      '-T',
      truncated,
      `${server.url}/r/cut`,
    ]);
    const received = await receiving;
    expect(received.code, received.stderr).toBe(5);
    expect(received.stdout.equals(data.subarray(0, 65536))).toBe(true);
  });
});
