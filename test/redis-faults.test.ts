import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESUMABLE_HEADER } from '../src/protocol/resumable.js';
import { run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'edgepipe-faults-'));
/** Clients that can resume say so: only they keep their place when they drop (issue 11, item 5). */
const RESUMABLE = { [RESUMABLE_HEADER]: '1' };

/** A config file giving dropped parties a grace period the test can wait out. */
function configFile(resumeGraceMs: number): string {
  const file = join(work, `config-${resumeGraceMs}.json`);
  writeFileSync(file, JSON.stringify({ broker: { resumeGraceMs } }));
  return file;
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await delay(50);
  }
}

/**
 * An upload the test controls: `push` hands bytes to the request body, `cut` kills the connection (the
 * server sees the upload break off, as when a client's network drops).
 */
function controlledUpload(url: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  const response = fetch(url, {
    method: 'PUT',
    body,
    headers,
    duplex: 'half',
    signal: abort.signal,
  } as RequestInit);
  response.catch(() => {});
  return {
    response,
    push(bytes: Uint8Array) {
      for (let at = 0; at < bytes.byteLength; at += 64 * 1024)
        controller.enqueue(bytes.subarray(at, at + 64 * 1024));
    },
    end: () => controller.close(),
    cut: () => abort.abort(),
  };
}

/** Reads a response body, counting bytes as they come; `done` settles with all of it or the error. */
function countingReader(response: Response) {
  const chunks: Uint8Array[] = [];
  let received = 0;
  const reader = response.body!.getReader();
  const done = (async () => {
    for (;;) {
      const { value, done: finished } = await reader.read();
      if (finished) return Buffer.concat(chunks);
      chunks.push(value);
      received += value.byteLength;
    }
  })();
  done.catch(() => {});
  return { done, received: () => received };
}

let redis: TestRedis;
const servers: ServerProcess[] = [];

async function server(redisUrl: string, graceMs = 20_000): Promise<ServerProcess> {
  const started = await spawnServer(['--redis', redisUrl, '--config', configFile(graceMs)]);
  servers.push(started);
  return started;
}

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  for (const s of servers) s.kill();
  await redis?.stop();
});

describe('resuming over HTTP, across instances', () => {
  it('a receiver killed mid-transfer resumes on another instance with curl -C -', async () => {
    const [a, b] = await Promise.all([server(redis.url), server(redis.url)]);
    const data = randomBytes(24 * MiB);
    const file = join(work, 'curl-resume.bin');
    const sending = fetch(`${a!.url}/f/curl`, { method: 'PUT', body: data });
    const first = spawn('curl', [
      '-sS',
      '--limit-rate',
      '4M',
      '-H',
      `${RESUMABLE_HEADER}: 1`,
      '-o',
      file,
      `${a!.url}/f/curl`,
    ]);
    const firstExit = new Promise((resolve) => first.once('exit', (_code, signal) => resolve(signal)));
    await until(
      async () => (statSync(file, { throwIfNoEntry: false })?.size ?? 0) > 3 * MiB || undefined,
      'curl got 3 MiB',
    );
    // The receiving client dies mid-body: its connection drops without a goodbye.
    first.kill('SIGKILL');
    expect(await firstExit).toBe('SIGKILL');
    const kept = statSync(file).size;
    expect(kept).toBeLessThan(data.byteLength);

    const second = await run(
      'curl',
      ['-sS', '-C', '-', '-w', '%{http_code}', '-o', file, `${b!.url}/f/curl`],
      {
        timeoutMs: 60_000,
      },
    );
    expect(second.stderr).toBe('');
    expect(second.stdout.toString()).toBe('206');
    expect(sha256(readFileSync(file))).toBe(sha256(data));
    expect(await (await sending).text()).toContain('All receiver(s) was/were received successfully.');
  });

  it('Range answers 206 with the exact Content-Range, ?offset 200; ranges past the end 416', async () => {
    const [a, b] = await Promise.all([server(redis.url), server(redis.url)]);
    const data = randomBytes(10 * MiB + 3);
    const receiving = fetch(`${a!.url}/h/range`, { headers: RESUMABLE });
    await delay(100);
    const sending = fetch(`${b!.url}/h/range`, { method: 'PUT', body: data });
    const first = await receiving;
    const reader = first.body!.getReader();
    let got = 0;
    while (got < MiB) got += (await reader.read()).value!.byteLength;
    await reader.cancel();

    const beyond = await fetch(`${b!.url}/h/range`, { headers: { Range: `bytes=${data.byteLength}-` } });
    expect(beyond.status).toBe(416);
    expect(await beyond.text()).toMatch(/^\[ERROR\] Byte \d+ is beyond/);

    const ranged = await fetch(`${b!.url}/h/range`, { headers: { Range: 'bytes=1000-' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 1000-${data.byteLength - 1}/${data.byteLength}`);
    expect(ranged.headers.get('content-length')).toBe(String(data.byteLength - 1000));
    const half = ranged.body!.getReader();
    got = 0;
    const parts: Uint8Array[] = [];
    while (got < 2 * MiB) {
      const { value } = await half.read();
      parts.push(value!);
      got += value!.byteLength;
    }
    await half.cancel();
    expect(Buffer.concat(parts).equals(data.subarray(1000, 1000 + got))).toBe(true);

    const rest = await fetch(`${a!.url}/h/range?offset=${1000 + got}`);
    expect(rest.status).toBe(200);
    expect(rest.headers.get('content-range')).toBeNull();
    expect(Buffer.from(await rest.arrayBuffer()).equals(data.subarray(1000 + got))).toBe(true);
    expect(await (await sending).text()).toContain('All receiver(s) was/were received successfully.');
  });

  it('?offset= may name the very end: an empty rest (a range there is 416, as RFC 9110 says)', async () => {
    const [a] = await Promise.all([server(redis.url)]);
    for (const size of [0, 1000]) {
      const data = randomBytes(size);
      const path = `${a!.url}/h/end-${size}`;
      const receiving = fetch(path, { headers: RESUMABLE });
      await delay(100);
      const sending = fetch(path, { method: 'PUT', body: data });
      expect(Buffer.from(await (await receiving).arrayBuffer()).equals(data)).toBe(true);
      expect(await (await sending).text()).toContain('All receiver(s) was/were received successfully.');
      const rest = await fetch(`${path}?offset=${size}`);
      expect(rest.status).toBe(200);
      expect(rest.headers.get('content-length')).toBe('0');
      expect((await rest.arrayBuffer()).byteLength).toBe(0);
      if (size > 0) expect((await fetch(path, { headers: { Range: `bytes=${size}-` } })).status).toBe(416);
    }
  });

  it('a sender whose upload broke asks HEAD for the offset and continues with ?offset=', async () => {
    const [a, b] = await Promise.all([server(redis.url), server(redis.url)]);
    const data = randomBytes(12 * MiB + 5);
    const receiving = fetch(`${b!.url}/f/up`).then((r) => countingReader(r));
    await delay(100);
    const upload = controlledUpload(`${a!.url}/f/up`, RESUMABLE);
    upload.push(data.subarray(0, 5 * MiB));
    const receiver = await receiving;
    await until(async () => receiver.received() > 2 * MiB || undefined, 'the receiver got 2 MiB');
    upload.cut();

    const head = await until(async () => {
      const response = await fetch(`${b!.url}/f/up`, { method: 'HEAD' });
      return response.headers.get('x-edgepipe-sender') === 'dropped' ? response : undefined;
    }, 'the sender counts as dropped');
    expect(head.headers.get('x-edgepipe-state')).toBe('transferring');
    expect(head.headers.get('x-edgepipe-resumable')).toBe('1');
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThanOrEqual(5 * MiB);

    // An offset beyond what the broker holds is refused with the one to use.
    const ahead = await fetch(`${b!.url}/f/up?offset=${offset + 1}`, { method: 'PUT', body: 'x' });
    expect(ahead.status).toBe(409);
    expect(ahead.headers.get('upload-offset')).toBe(String(offset));

    const resumed = await run('curl', ['-sS', '-T', '-', `${b!.url}/f/up?offset=${offset}`], {
      input: data.subarray(offset),
    });
    expect(resumed.stdout.toString()).toContain(`[INFO] Resuming the transfer at byte ${offset}.`);
    expect(resumed.stdout.toString()).toContain('All receiver(s) was/were received successfully.');
    expect(sha256(await receiver.done)).toBe(sha256(data));
  });

  it('an instance killed with SIGKILL mid-transfer: its sender and its receiver resume through another', async () => {
    const [victim, b] = await Promise.all([server(redis.url), server(redis.url)]);
    // Larger than every socket buffer between the victim and curl can hold, so curl is surely mid-body.
    const data = randomBytes(48 * MiB);

    // Pipe 1: sender on the victim, receiver on B.
    const receiving1 = fetch(`${b!.url}/k/one`).then((r) => countingReader(r));
    await delay(100);
    const upload = controlledUpload(`${victim!.url}/k/one`);
    upload.push(data.subarray(0, 6 * MiB));
    const receiver1 = await receiving1;

    // Pipe 2: sender on B, receiver on the victim (curl, reading slowly).
    const file = join(work, 'victim-receiver.bin');
    const sending2 = fetch(`${b!.url}/k/two`, { method: 'PUT', body: data });
    // Slow enough (48 s for the whole body) that it is surely mid-body when its instance dies.
    const curl = run('curl', ['-sS', '--limit-rate', '1M', '-o', file, `${victim!.url}/k/two`]);
    await until(async () => receiver1.received() > 2 * MiB || undefined, 'receiver 1 got 2 MiB');
    await until(
      async () => (statSync(file, { throwIfNoEntry: false })?.size ?? 0) > 2 * MiB || undefined,
      'receiver 2 got 2 MiB',
    );
    victim!.child.kill('SIGKILL');
    await victim!.exited();
    expect((await curl).code).not.toBe(0);
    upload.cut();

    // The receiver resumes at once: the broker waits out the dead instance's heartbeat by itself.
    const kept = statSync(file).size;
    const resumed2 = await run('curl', ['-sS', '-C', '-', '-o', file, `${b!.url}/k/two`]);
    expect(resumed2.stderr).toBe('');
    expect(kept).toBeGreaterThan(0);
    expect(sha256(readFileSync(file))).toBe(sha256(data));
    expect(await (await sending2).text()).toContain('All receiver(s) was/were received successfully.');

    const offset = await until(async () => {
      const response = await fetch(`${b!.url}/k/one`, { method: 'HEAD' });
      return response.headers.get('x-edgepipe-sender') === 'dropped'
        ? Number(response.headers.get('upload-offset'))
        : undefined;
    }, 'the dead instance counts as gone');
    const resumed1 = await fetch(`${b!.url}/k/one?offset=${offset}`, {
      method: 'PUT',
      body: data.subarray(offset),
    });
    expect(await resumed1.text()).toContain('All receiver(s) was/were received successfully.');
    expect(sha256(await receiver1.done)).toBe(sha256(data));
  });

  it('a sender that does not come back: receivers end with an error after the grace period', async () => {
    const [a] = await Promise.all([server(redis.url, 500)]);
    const receiving = fetch(`${a!.url}/g/late`).then((r) => countingReader(r));
    await delay(100);
    const upload = controlledUpload(`${a!.url}/g/late`, RESUMABLE);
    upload.push(randomBytes(1 * MiB));
    const receiver = await receiving;
    await until(async () => receiver.received() === MiB || undefined, 'the receiver got it all');
    upload.cut();
    await expect(receiver.done).rejects.toThrow();
  });
});

describe('Redis stopped and restarted mid-transfer', () => {
  it('transfers end with an error, new requests get 503, and the instances recover without a restart', async () => {
    const own = await startTestRedis();
    try {
      const [a, b] = await Promise.all([server(own.url), server(own.url)]);
      const receiving = fetch(`${b!.url}/o/t`).then((r) => countingReader(r));
      await delay(100);
      const upload = controlledUpload(`${a!.url}/o/t`);
      upload.push(randomBytes(4 * MiB));
      const receiver = await receiving;
      await until(async () => receiver.received() > MiB || undefined, 'the transfer runs');

      await own.stop();
      // Never a clean-looking end: the receiver's body fails.
      await expect(receiver.done).rejects.toThrow();
      const refused = await until(async () => {
        const response = await fetch(`${b!.url}/o/new`, { signal: AbortSignal.timeout(10_000) });
        return response.status === 503 ? response : undefined;
      }, 'a new request is refused with 503');
      expect(await refused.text()).toMatch(/^\[ERROR\] The pipe broker is unavailable/);
      const head = await fetch(`${a!.url}/o/new`, { method: 'HEAD' });
      expect(head.status).toBe(503);
      upload.cut();

      await own.start();
      const data = randomBytes(3 * MiB);
      await until(async () => {
        const got = fetch(`${b!.url}/o/after`, { signal: AbortSignal.timeout(10_000) });
        const sent = await fetch(`${a!.url}/o/after`, {
          method: 'PUT',
          body: data,
          signal: AbortSignal.timeout(10_000),
        });
        const response = await got;
        if (sent.status !== 200 || response.status !== 200) return undefined;
        return sha256(new Uint8Array(await response.arrayBuffer())) === sha256(data) ? true : undefined;
      }, 'a transfer succeeds after the restart');
      // The instances kept running through it all.
      expect(a!.child.exitCode).toBeNull();
      expect(b!.child.exitCode).toBeNull();
    } finally {
      await own.stop();
    }
  });
});
