// The soak test of issue 17: 20 devices × 500 records, each an `edgepipe report` process with its own
// spool, through a proxy that cuts connections at random, while the broker (a server process on Redis) is
// restarted once and one reporter is SIGKILLed and restarted. Every record reaches a consumer group exactly
// once and in order per device; a second group gets them all too; a consumer killed mid-batch has its
// records handed to another consumer after claimAfterMs. Needs `npm run build` and redis-server on PATH.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type CuttingProxy, startCuttingProxy } from './helpers/cutting-proxy.js';
import { repoRoot, type ServerProcess, spawnServer } from './helpers/processes.js';
import { randomPlan } from './helpers/random-fault-plan.js';
import { freePort, startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { configFile, type EdgepipeProcess, edgepipe, spawnEdgepipe, until } from './helpers/topic-cli.js';

const DEVICES = 20;
const RECORDS = 500;
const CLAIM_AFTER_MS = 1000;
const KILLED_REPORTER = 0;

let redis: TestRedis;
let broker: ServerProcess | undefined;
let proxy: CuttingProxy;
let port: number;
let config: string;
const children: ChildProcess[] = [];

const record = (device: number, n: number) => `device-${device} ${n}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const startBroker = () => spawnServer(['--redis', redis.url, '--config', config, '--port', String(port)]);

beforeAll(async () => {
  redis = await startTestRedis();
  port = await freePort();
  config = configFile({ topics: { claimAfterMs: CLAIM_AFTER_MS } });
  broker = await startBroker();
  proxy = await startCuttingProxy({
    target: { host: '127.0.0.1', port },
    plan: randomPlan({ seed: 17, cutProbability: 0.3, maxPosition: 1500, maxCuts: 200 }),
  });
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  broker?.kill();
  await proxy?.close();
  await redis?.stop();
});

/** A reporter for device `i`, its records fed on stdin from `from` at a steady pace. */
function reporter(i: number, spool: string): EdgepipeProcess {
  const p = spawnEdgepipe([
    'report',
    `fleet/device-${i}`,
    '--server',
    proxy.url,
    '--spool',
    spool,
    '--batch-bytes',
    '1KiB',
    '--batch-ms',
    '100',
    '--retry-base',
    '50ms',
    '--retry-cap',
    '500ms',
    ...(i === KILLED_REPORTER ? [] : ['-q']),
  ]);
  children.push(p.child);
  return p;
}

/** Writes records `from` … `to − 1` in slices of `slice`, one slice every `everyMs`. */
async function feed(
  p: EdgepipeProcess,
  device: number,
  from: number,
  to: number,
  slice: number,
  everyMs: number,
) {
  for (let n = from; n < to; n += slice) {
    const lines = [];
    for (let k = n; k < Math.min(to, n + slice); k++) lines.push(`${record(device, k)}\n`);
    p.child.stdin!.write(lines.join(''));
    await sleep(everyMs);
  }
}

/** Per device, the record numbers in the order they came. */
function byDevice(output: string): Map<number, number[]> {
  const seen = new Map<number, number[]>();
  for (const line of output.split('\n')) {
    if (line === '') continue;
    const match = /^device-(\d+) (\d+)$/.exec(line);
    expect(match, `a line that no device wrote: ${line}`).not.toBeNull();
    const list = seen.get(Number(match![1])) ?? [];
    list.push(Number(match![2]));
    seen.set(Number(match![1]), list);
  }
  return seen;
}

function expectEveryRecordOnceInOrder(output: string): void {
  const seen = byDevice(output);
  const all = Array.from({ length: RECORDS }, (_, n) => n);
  for (let i = 0; i < DEVICES; i++) expect(seen.get(i), `device-${i}`).toEqual(all);
}

it('20 devices × 500 records through cuts, a broker restart and a killed reporter: each once, in order', async () => {
  const spools = Array.from({ length: DEVICES }, () => mkdtempSync(join(tmpdir(), 'edgepipe-soak-')));
  const consumer = spawnEdgepipe([
    'consume',
    'fleet/*',
    '--server',
    `http://127.0.0.1:${port}`,
    '--group',
    'g1',
    '--consumer',
    'c1',
    '--count',
    '500',
    '--wait',
    '1s',
    '--retry-base',
    '50ms',
    '--retry-cap',
    '500ms',
    '-q',
  ]);
  children.push(consumer.child);
  const reporters = spools.map((spool, i) => reporter(i, spool));
  // Every device writes its records over about 6 s; the one to be killed writes 100 as the others do.
  const feeding = reporters.map((p, i) =>
    i === KILLED_REPORTER ? feed(p, i, 0, 100, 25, 300) : feed(p, i, 0, RECORDS, 25, 300),
  );
  await sleep(1500);
  broker!.kill();
  await broker!.exited();
  // While the broker is down, the reporter to be killed gets up to half of its records and the end of its
  // input: once it says the input ended, each of its batches is in its spool (written and fsynced before
  // any send) and none can have been sent since the broker went. SIGKILL it there, and start it again on
  // the same spool with the second half.
  const killed = reporters[KILLED_REPORTER]!;
  await feeding[KILLED_REPORTER];
  await feed(killed, KILLED_REPORTER, 100, RECORDS / 2, 150, 0);
  killed.child.stdin!.end();
  await until(() => /the input ended/.test(killed.stderr()), 20_000, 'the reporter to queue its input');
  killed.child.kill('SIGKILL');
  await killed.exited();
  // It was killed with batches still to send: the restart has something to drain.
  expect(readdirSync(spools[KILLED_REPORTER]!).some((name) => name.endsWith('.batch'))).toBe(true);
  broker = await startBroker();
  const restarted = reporter(KILLED_REPORTER, spools[KILLED_REPORTER]!);
  feeding.push(feed(restarted, KILLED_REPORTER, RECORDS / 2, RECORDS, 25, 100));
  await Promise.all(feeding);
  for (const p of [...reporters.slice(1), restarted]) p.child.stdin!.end();
  const codes = await Promise.all([...reporters.slice(1), restarted].map((p) => p.exited()));
  expect(codes.every((code) => code === 0)).toBe(true);
  expect(proxy.cuts).toBeGreaterThan(0);

  const total = DEVICES * RECORDS;
  await until(() => consumer.stdout().split('\n').length - 1 >= total, 60_000, 'every record at group g1');
  // Anything more (a duplicate) would come within a read or two.
  await sleep(1500);
  expectEveryRecordOnceInOrder(consumer.stdout());

  const second = await edgepipe(
    [
      'consume',
      'fleet/*',
      '--server',
      `http://127.0.0.1:${port}`,
      '--group',
      'g2',
      '--count',
      '1000',
      '--once',
      '--wait',
      '500ms',
    ],
    { timeoutMs: 60_000 },
  );
  expect(second.code).toBe(0);
  expectEveryRecordOnceInOrder(second.stdout.toString());

  // A consumer killed mid-batch: its records go to another consumer of the group after claimAfterMs.
  const hung = mkdtempSync(join(tmpdir(), 'edgepipe-soak-'));
  const hanging = spawn(
    process.execPath,
    [
      join(repoRoot, 'dist/cli/main.js'),
      'consume',
      'fleet/device-3',
      '--server',
      `http://127.0.0.1:${port}`,
      '--group',
      'g3',
      '--consumer',
      'hangs',
      '--count',
      '50',
      '--exec',
      `cat > ${join(hung, 'got')}; sleep 60`,
      '-q',
    ],
    { detached: true, stdio: 'ignore' },
  );
  children.push(hanging);
  await until(
    () => {
      try {
        return readFileSync(join(hung, 'got'), 'utf8').split('\n').length > 50;
      } catch {
        return false;
      }
    },
    20_000,
    'the hanging consumer to get its batch',
  );
  process.kill(-hanging.pid!, 'SIGKILL');
  await sleep(CLAIM_AFTER_MS + 200);
  const taker = await edgepipe(
    [
      'consume',
      'fleet/device-3',
      '--server',
      `http://127.0.0.1:${port}`,
      '--group',
      'g3',
      '--consumer',
      'takes',
      '--count',
      '1000',
      '--once',
      '--wait',
      '500ms',
    ],
    { timeoutMs: 30_000 },
  );
  expect(taker.code).toBe(0);
  const got = byDevice(taker.stdout.toString()).get(3);
  expect(got).toEqual(Array.from({ length: RECORDS }, (_, n) => n));
}, 120_000);
