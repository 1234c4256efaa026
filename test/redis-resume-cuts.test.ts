import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESUMABLE_HEADER } from '../src/protocol/resumable.js';
import { run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

/**
 * Issue 11, items 4 and 5, tested the way they were found: real servers sharing a real Redis, curl as the
 * client, a receiver slowed down with `--limit-rate` (so the socket buffers between the server and curl are
 * full) killed mid-way or after its sender finished, resumed through another instance with `curl -C -`.
 */

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'edgepipe-cuts-'));
const DECLARE = ['-H', `${RESUMABLE_HEADER}: 1`];
/** Random cut points the loop tries (each a few hundred milliseconds to a few seconds). */
const CUTS = Number(process.env.EDGEPIPE_RESUME_CUTS ?? 12);
/** The grace period of the servers the item-5 tests time against. */
const SHORT_GRACE_MS = 8000;

let redis: TestRedis;
let a: ServerProcess;
let b: ServerProcess;
let short: ServerProcess;
let memory: ServerProcess;

function configFile(name: string, broker: Record<string, number>): string {
  const file = join(work, `${name}.json`);
  writeFileSync(file, JSON.stringify({ broker }));
  return file;
}

beforeAll(async () => {
  redis = await startTestRedis();
  // A window (1 MiB) smaller than what loopback sockets and curl buffer (measured up to ~9 MiB): a receiver's
  // written position runs megabytes ahead of what curl has, which only the socket-buffer margin covers.
  const resumeConfig = configFile('resume', { windowBytes: MiB, resumeGraceMs: 20_000 });
  const shortConfig = configFile('short', { resumeGraceMs: SHORT_GRACE_MS });
  [a, b, short, memory] = await Promise.all([
    spawnServer(['--redis', redis.url, '--config', resumeConfig]),
    spawnServer(['--redis', redis.url, '--config', resumeConfig]),
    spawnServer(['--redis', redis.url, '--config', shortConfig]),
    spawnServer([]),
  ]);
});
afterAll(async () => {
  for (const server of [a, b, short, memory]) server?.kill();
  await redis?.stop();
});

async function until<T>(probe: () => T | undefined, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await delay(10);
  }
}

const sizeOf = (file: string) => statSync(file, { throwIfNoEntry: false })?.size ?? 0;

/** A curl receiver writing to `file`; `kill` SIGKILLs it (its connection drops without a goodbye). */
function curlReceiver(url: string, file: string, rate: string, declare: boolean) {
  const child: ChildProcess = spawn(
    'curl',
    ['-sS', '--limit-rate', rate, ...(declare ? DECLARE : []), '-o', file, url],
    {
      stdio: 'ignore',
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    exited,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** `curl -C -` into `file`: the HTTP status it got. */
async function resumeWithCurl(url: string, file: string, declare: boolean): Promise<string> {
  const resumed = await run(
    'curl',
    ['-sS', '-C', '-', ...(declare ? DECLARE : []), '-w', '%{http_code}', '-o', file, url],
    { timeoutMs: 60_000 },
  );
  return `${resumed.stdout}${resumed.stderr}`;
}

/** The sender's PUT; resolves with its transcript once the transfer is over. */
function send(url: string, data: NonSharedBuffer): Promise<string> {
  return fetch(url, { method: 'PUT', body: data }).then((response) => response.text());
}

describe('a receiver that drops resumes byte-exact through another instance (item 4)', () => {
  it('killed mid-way: the frames its socket buffers swallowed are still there', async () => {
    const data = randomBytes(24 * MiB);
    const file = join(work, 'mid.bin');
    const sending = send(`${a.url}/cut/mid`, data);
    const receiver = curlReceiver(`${a.url}/cut/mid`, file, '4M', true);
    await until(() => (sizeOf(file) > 6 * MiB ? true : undefined), 'curl got 6 MiB');
    await receiver.kill();
    expect(sizeOf(file)).toBeLessThan(data.byteLength);

    expect(await resumeWithCurl(`${b.url}/cut/mid`, file, true)).toBe('206');
    expect(sha256(readFileSync(file))).toBe(sha256(data));
    expect(await sending).toContain('All receiver(s) was/were received successfully.');
  });

  it('killed after its sender finished (a plain curl, no header): it resumes within the grace period', async () => {
    const data = randomBytes(8 * MiB + 5);
    const file = join(work, 'after.bin');
    const sending = send(`${a.url}/cut/after`, data);
    // Slow enough that curl is seconds behind the server when the sender finishes (~5 MiB buffered).
    const receiver = curlReceiver(`${a.url}/cut/after`, file, '1M', false);
    // The server wrote the last byte to curl's connection: for the sender the transfer is over.
    expect(await sending).toContain('All receiver(s) was/were received successfully.');
    await receiver.kill();
    const kept = sizeOf(file);
    // Megabytes were still in the socket buffers when curl died.
    expect(kept).toBeLessThan(data.byteLength);

    expect(await resumeWithCurl(`${b.url}/cut/after`, file, false)).toBe('206');
    expect(sha256(readFileSync(file))).toBe(sha256(data));
  });

  it(
    `resumes byte-exact at ${CUTS} random cut points (EDGEPIPE_RESUME_CUTS)`,
    async () => {
      const rates = ['2M', '4M', '8M'];
      for (let i = 0; i < CUTS; i++) {
        const data = randomBytes(randomInt(4 * MiB, 12 * MiB));
        const afterEnd = randomInt(0, 3) === 0;
        // Mid-transfer only a receiver that declared it can resume keeps its place; after the end, any.
        const declare = afterEnd ? randomInt(0, 2) === 0 : true;
        const rate = rates[randomInt(0, rates.length)]!;
        const cut = randomInt(Math.floor(data.byteLength / 10), Math.floor((data.byteLength * 9) / 10));
        const [first, second] = randomInt(0, 2) === 0 ? [a, b] : [b, a];
        const path = `/cut/loop-${i}`;
        const file = join(work, `loop-${i}.bin`);
        const what = `cut ${i}: ${data.byteLength} bytes, ${afterEnd ? 'after the end' : `at ${cut}`}, ${rate}/s, ${declare ? 'declared' : 'plain'}`;
        const sending = send(`${first.url}${path}`, data);
        const receiver = curlReceiver(`${first.url}${path}`, file, rate, declare);
        if (afterEnd) await sending;
        else await until(() => (sizeOf(file) >= cut ? true : undefined), `${what}: curl reached the cut`);
        await receiver.kill();
        const status = await resumeWithCurl(`${second.url}${path}`, file, declare);
        // A receiver that got every byte before it died has nothing left to ask for (416 or a complete file).
        if (status !== '206') expect(sizeOf(file), what).toBe(data.byteLength);
        expect(sha256(readFileSync(file)), what).toBe(sha256(data));
        expect(await sending, what).toContain('All receiver(s) was/were received successfully.');
      }
    },
    30_000 + CUTS * 5000,
  );
});

/** A curl sender reading its body from stdin: `push` feeds it, `kill` SIGKILLs it mid-upload. */
function curlSender(url: string, declare: boolean) {
  const child = spawn('curl', ['-sS', '-T', '-', ...(declare ? DECLARE : []), url], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  child.stdin!.on('error', () => {});
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    push: (bytes: Uint8Array) => child.stdin!.write(bytes),
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Reads a response body, counting bytes; `ended` settles with the time the body failed or ended. */
function timedReader(response: Response) {
  let received = 0;
  const reader = response.body!.getReader();
  const ended = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return { at: Date.now(), failed: false };
        received += value.byteLength;
      }
    } catch {
      return { at: Date.now(), failed: true };
    }
  })();
  return { ended, received: () => received };
}

describe('who gets the grace period: only a party that declares it can resume (item 5)', () => {
  it('a dead plain curl sender cuts its receivers at once; a declared one is waited for', async () => {
    const cases = [false, true].map(async (declare) => {
      const url = `${short.url}/grace/sender-${declare ? 'declared' : 'plain'}`;
      const receiving = fetch(url).then(timedReader);
      await delay(100);
      const sender = curlSender(url, declare);
      sender.push(randomBytes(MiB));
      const receiver = await receiving;
      await until(() => (receiver.received() === MiB ? true : undefined), 'the receiver got 1 MiB');
      await sender.kill();
      const killedAt = Date.now();
      const { at, failed } = await receiver.ended;
      return { failed, afterMs: at - killedAt };
    });
    const [plain, declared] = await Promise.all(cases);
    // Truncation is never silent either way; only the wait differs.
    expect(plain!.failed).toBe(true);
    expect(declared!.failed).toBe(true);
    expect(plain!.afterMs).toBeLessThan(SHORT_GRACE_MS / 2);
    expect(declared!.afterMs).toBeGreaterThanOrEqual(SHORT_GRACE_MS - 1000);
  });

  it('a dead plain curl receiver is gone at once (its sender is told, the path is free); a declared one is waited for', async () => {
    const cases = [false, true].map(async (declare) => {
      const url = `${short.url}/grace/receiver-${declare ? 'declared' : 'plain'}`;
      const file = join(work, `grace-${declare}.bin`);
      const sending = fetch(url, { method: 'PUT', body: randomBytes(96 * MiB) }).then((r) => r.text());
      sending.catch(() => {});
      const receiver = curlReceiver(url, file, '2M', declare);
      await until(() => (sizeOf(file) > MiB ? true : undefined), 'curl got 1 MiB');
      await receiver.kill();
      const killedAt = Date.now();
      const transcript = await sending;
      return { transcript, afterMs: Date.now() - killedAt };
    });
    const [plain, declared] = await Promise.all(cases);
    expect(plain!.transcript).toContain('All receiver(s) was/were closed halfway.');
    expect(declared!.transcript).toContain('All receiver(s) was/were closed halfway.');
    expect(plain!.afterMs).toBeLessThan(SHORT_GRACE_MS / 2);
    expect(declared!.afterMs).toBeGreaterThanOrEqual(SHORT_GRACE_MS - 1000);

    // The pipe the plain receiver left is over: its path takes a new transfer at once.
    const again = `${short.url}/grace/receiver-plain`;
    const [transcript, received] = await Promise.all([
      fetch(again, { method: 'PUT', body: 'again' }).then((r) => r.text()),
      fetch(again).then((r) => r.text()),
    ]);
    expect(received).toBe('again');
    expect(transcript).toContain('All receiver(s) was/were received successfully.');
  });

  it(`a malformed ${RESUMABLE_HEADER} is refused; browsers may send it; in memory it changes nothing`, async () => {
    for (const method of ['GET', 'PUT']) {
      const refused = await fetch(`${short.url}/grace/bad`, {
        method,
        headers: { [RESUMABLE_HEADER]: 'yes' },
        ...(method === 'PUT' ? { body: 'x' } : {}),
      });
      expect(refused.status).toBe(400);
      expect(await refused.text()).toBe(`[ERROR] ${RESUMABLE_HEADER} should be 1 or 0, but it is 'yes'.\n`);
    }
    const preflight = await fetch(`${short.url}/grace/any`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://page.example', 'Access-Control-Request-Headers': RESUMABLE_HEADER },
    });
    expect(preflight.headers.get('access-control-allow-headers')).toContain(RESUMABLE_HEADER);

    const headers = { [RESUMABLE_HEADER]: '1' };
    const [transcript, received] = await Promise.all([
      fetch(`${memory.url}/grace/mem`, { method: 'PUT', body: 'in memory', headers }).then((r) => r.text()),
      fetch(`${memory.url}/grace/mem`, { headers }).then((r) => r.text()),
    ]);
    expect(received).toBe('in memory');
    expect(transcript).toContain('All receiver(s) was/were received successfully.');
  });
});
