// The topic rows of `npm run bench` (issue 17): small records from many producers to one consumer group,
// through edgepipe's topics on Redis and through Debian's mosquitto with QoS 1, in the same interleaved
// rounds, each side as its users run it:
//
//   edgepipe: `edgepipe serve --redis` (defaults otherwise) on a redis-server of the bench's own with an
//             append-only file fsynced every second (records survive a crash of either), producers
//             `edgepipe report fleet-<round>/device-<i>` and one `edgepipe consume 'fleet-<round>/*'`;
//   mosquitto: a mosquitto of the bench's own (in memory, its default), producers
//             `mosquitto_pub -q 1 -l -t fleet-<round>/device-<i>` and one `mosquitto_sub -q 1 -t 'fleet-<round>/#'`.
//
// Each round has topics of its own, so no consumer reads an earlier round's records.
//
// Producers start first; their input starts for all at one moment once they are up (idle on /proc).
//
//   (r1) throughput: PRODUCERS producers write RECORDS records of 100 bytes each as fast as their stdin
//        takes them; records per second at the consumer, from its first record to its last, and the broker's
//        CPU (edgepipe with its redis-server; mosquitto) per 100,000 records
//   (r2) latency: the same producers at RATE records/s each for SECONDS s, each record stamped when written;
//        p50 / p99 ms from the stamp to the consumer's stdout
//
// Both sides' producers read lines from a generator through a shell pipe, so neither is favoured by how its
// input is made. `edgepipe report` batches (--batch-ms): the latency rows say which value they ran with.
//
// Runs from bench/run.js (BENCH_TOPICS=0 leaves it out) or on its own after `npm run build`:
// `node bench/topic-bench.js`. Needs redis-server, mosquitto and mosquitto_pub/_sub (Debian: `apt-get install
// redis-server mosquitto mosquitto-clients`); a side whose programs are missing is left out with a line.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { treeCpuSeconds } from './proc-stats.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PRODUCERS = Number(process.env.BENCH_TOPIC_PRODUCERS ?? 20);
const RECORDS = Number(process.env.BENCH_TOPIC_RECORDS ?? 5000);
const RATE = Number(process.env.BENCH_TOPIC_RATE ?? 10);
const SECONDS = Number(process.env.BENCH_TOPIC_SECONDS ?? 10);
/** What the latency rows run `edgepipe report` with: a batch leaves after at most this many ms. */
const LATENCY_BATCH_MS = Number(process.env.BENCH_TOPIC_BATCH_MS ?? 5);
const RECORD_BYTES = 100;
/**
 * Every producer's input starts at one moment, once every producer is up (its processes have stopped using
 * CPU): 20 Node processes take seconds to start on 2 cores, mosquitto_pub milliseconds, and the rows compare
 * brokers, not process start-up.
 */
const STARTUP_LIMIT_MS = 60_000;

/** Resolves once the process trees of `pids` used no CPU for a while (or after STARTUP_LIMIT_MS). */
async function settled(pids) {
  const cpu = () => pids.reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
  const started = Date.now();
  let before = cpu();
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const now = cpu();
    if (now - before < 0.02 * pids.length || Date.now() - started > STARTUP_LIMIT_MS) return;
    before = now;
  }
}

/** A round that has not seen every record by then is reported as failed, not waited on forever. */
const ROUND_TIMEOUT_MS = 180_000;

/**
 * Writes `count` records of 100 bytes (newline included) for one device, `rate` per second (0: as fast as
 * stdout takes them). Each starts with the time it was written, in ms since the epoch with a fraction.
 */
const GENERATOR = `
const [device, countText, rateText, goFile] = process.argv.slice(2);
const [count, rate] = [Number(countText), Number(rateText)];
const stamp = () => (performance.timeOrigin + performance.now()).toFixed(3);
const line = (seq) => { const head = stamp() + ' ' + device + ' ' + seq + ' '; return head + 'x'.repeat(${RECORD_BYTES - 1} - head.length) + '\\n'; };
let seq = 0;
const go = () => {
if (rate === 0) {
  const more = () => { while (seq < count) { if (!process.stdout.write(line(seq++))) return process.stdout.once('drain', more); } };
  more();
} else {
  const started = performance.now();
  const tick = () => {
    const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (seq < due) process.stdout.write(line(seq++));
    if (seq < count) setTimeout(tick, Math.max(1, Math.floor(1000 / rate / 2)));
  };
  tick();
}
};
const wait = () => (require('node:fs').existsSync(goFile) ? go() : setTimeout(wait, 5));
wait();
`;

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;

async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/** Resolves once `port` accepts connections (a broker that printed nothing useful to wait for). */
async function listening(port, name) {
  const { connect } = await import('node:net');
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((done) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        done(true);
      });
      socket.on('error', () => done(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${port}`);
}

function startProcess(command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...options });
  child.stderr.on('data', (data) => process.stderr.write(`[${args[0] ?? command}] ${data}`));
  child.on('error', () => {});
  return {
    child,
    pid: child.pid,
    kill: () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    },
  };
}

/** The edgepipe side: a durable redis-server and `edgepipe serve --redis`. */
async function startEdgepipe(dir) {
  const redisPort = await freePort();
  const redis = startProcess('redis-server', [
    '--port',
    String(redisPort),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--dir',
    dir,
  ]);
  await listening(redisPort, 'redis-server');
  const port = await freePort();
  const server = startProcess(join(root, 'bin', 'edgepipe.js'), [
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--redis',
    `redis://127.0.0.1:${redisPort}`,
  ]);
  server.child.stdout.resume();
  await listening(port, 'edgepipe');
  const url = `http://127.0.0.1:${port}`;
  const cli = join(root, 'bin', 'edgepipe.js');
  return {
    name: 'edgepipe topics (redis, appendfsync everysec)',
    cpu: () => treeCpuSeconds(server.pid) + treeCpuSeconds(redis.pid),
    consumer: (round) => [cli, 'consume', `fleet-${round}/*`, '--server', url, '--group', 'bench'],
    producer: (device, round, latency) =>
      `${shellQuote(cli)} report fleet-${round}/${device} --server ${url} --device ${device}-${round}` +
      (latency ? ` --batch-ms ${LATENCY_BATCH_MS}` : ''),
    stop: () => {
      server.kill();
      redis.kill();
    },
  };
}

/** The mosquitto side: a broker of its own on a free port, anonymous, in memory. */
async function startMosquitto(dir) {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  // max_queued_messages: its default (1,000 per subscriber) dropped QoS 1 records here as soon as twenty
  // producers outran the subscriber (seen: a device's records 184 to 250 never arrived), which would not be
  // at-least-once delivery; the queue is bounded far above a round's records instead.
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_queued_messages 1000000\n`,
  );
  const broker = startProcess('mosquitto', ['-c', conf]);
  broker.child.stdout.resume();
  await listening(port, 'mosquitto');
  return {
    name: 'mosquitto 2 (QoS 1)',
    cpu: () => treeCpuSeconds(broker.pid),
    // stdbuf: mosquitto_sub writes through stdio, which holds a pipe's lines back in blocks.
    consumer: (round) => [
      'stdbuf',
      '-oL',
      'mosquitto_sub',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-q',
      '1',
      '-i',
      `bench-${round}`,
      '-t',
      `fleet-${round}/#`,
    ],
    producer: (device, round) => `mosquitto_pub -h 127.0.0.1 -p ${port} -q 1 -l -t fleet-${round}/${device}`,
    stop: () => broker.kill(),
  };
}

const shellQuote = (text) => `'${text.replaceAll("'", "'\\''")}'`;

/**
 * One round on one side: the consumer first, then every producer; resolves with records/s, CPU per 100,000
 * records and the latencies seen, once every record arrived (in order per device, or the round fails).
 */
async function round(side, roundName, { count, rate, latency }) {
  const [command, ...args] = side.consumer(roundName);
  const consumer = startProcess(command, args);
  const expected = PRODUCERS * count;
  const next = new Map();
  const latencies = [];
  let seen = 0;
  let first;
  let last;
  const cpuBefore = side.cpu();
  const done = new Promise((resolveDone, rejectDone) => {
    const timer = setTimeout(
      () =>
        rejectDone(new Error(`${side.name}: ${seen} of ${expected} records after ${ROUND_TIMEOUT_MS} ms`)),
      ROUND_TIMEOUT_MS,
    );
    createInterface({ input: consumer.child.stdout }).on('line', (line) => {
      const now = performance.timeOrigin + performance.now();
      const [stamp, device, seqText] = line.split(' ');
      const seq = Number(seqText);
      if (!device || Number.isNaN(seq)) return;
      const want = next.get(device) ?? 0;
      if (seq !== want) {
        clearTimeout(timer);
        rejectDone(new Error(`${side.name}: ${device} record ${seq} arrived where ${want} was due`));
        return;
      }
      next.set(device, want + 1);
      first ??= now;
      last = now;
      latencies.push(now - Number(stamp));
      if (++seen === expected) {
        clearTimeout(timer);
        resolveDone();
      }
    });
  });
  // mosquitto_sub must be subscribed before anything is published (QoS 1 keeps nothing for a subscriber
  // that has not subscribed yet); a consumer group starts at the earliest record anyway.
  await new Promise((r) => setTimeout(r, 1000));
  const generator = resolve(tmpdir(), `edgepipe-topic-gen-${process.pid}.cjs`);
  writeFileSync(generator, GENERATOR);
  const producers = [];
  const goFile = resolve(tmpdir(), `edgepipe-topic-go-${process.pid}-${roundName}-${side.name.length}`);
  rmSync(goFile, { force: true });
  for (let i = 0; i < PRODUCERS; i++) {
    const device = `device-${i}`;
    producers.push(
      startProcess('sh', [
        '-c',
        `node ${generator} ${device} ${count} ${rate} ${goFile} | ${side.producer(device, roundName, latency)}`,
      ]),
    );
  }
  await settled(producers.map((producer) => producer.pid));
  writeFileSync(goFile, '');
  try {
    await done;
  } finally {
    for (const producer of producers) producer.kill();
    consumer.kill();
    rmSync(goFile, { force: true });
  }
  await new Promise((r) => setTimeout(r, 300));
  const cpu = side.cpu() - cpuBefore;
  return {
    perSecond: seen > 1 ? (seen - 1) / ((last - first) / 1000) : Number.NaN,
    cpuPer100k: (cpu / expected) * 100_000,
    latencies,
  };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
};

/** Runs `rounds` interleaved rounds of (r1) and (r2) on every side it can start; returns their figures. */
export async function measureTopics({ rounds = 3, log = (line) => process.stderr.write(`${line}\n`) } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'edgepipe-topic-bench-'));
  const sides = [];
  // The brokers run in process groups of their own: an interrupted bench must not leave them behind.
  const interrupted = () => {
    for (const side of sides) side.stop();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    if (has('redis-server')) sides.push(await startEdgepipe(dir));
    else log('redis-server is missing: the edgepipe topic rows are left out.');
    if (has('mosquitto') && has('mosquitto_pub') && has('mosquitto_sub'))
      sides.push(await startMosquitto(dir));
    else log('mosquitto or mosquitto-clients is missing: the mosquitto rows are left out.');
    const results = new Map(sides.map((side) => [side.name, { perSecond: [], cpu: [], p50: [], p99: [] }]));
    for (let r = 0; r < rounds; r++) {
      // Order flipped each round, so neither side always runs on a machine warmed by the other.
      for (const side of r % 2 ? [...sides].reverse() : sides) {
        const result = results.get(side.name);
        log(`topics round ${r + 1}/${rounds}: ${side.name}`);
        const fast = await round(side, `t${r}`, { count: RECORDS, rate: 0, latency: false });
        result.perSecond.push(fast.perSecond);
        result.cpu.push(fast.cpuPer100k);
        const paced = await round(side, `l${r}`, { count: RATE * SECONDS, rate: RATE, latency: true });
        result.p50.push(quantile(paced.latencies, 0.5));
        result.p99.push(quantile(paced.latencies, 0.99));
      }
    }
    return results;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    for (const side of sides) side.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints the topic table and edgepipe's ratios against mosquitto. */
export function printTopicTable(results, rounds) {
  console.log(
    `\nTopics: ${PRODUCERS} producers × 100-byte records to one consumer, medians of ${rounds} interleaved rounds\n` +
      `(r1: ${RECORDS} records each, as fast as they go; r2: ${RATE} records/s each for ${SECONDS} s, ` +
      `edgepipe report --batch-ms ${LATENCY_BATCH_MS})\n`,
  );
  console.log('| broker | (r1) records/s | (r1) broker CPU s / 100k records | (r2) p50 ms | (r2) p99 ms |');
  console.log('|---|---|---|---|---|');
  for (const [name, r] of results) {
    console.log(
      `| ${name} | ${Math.round(median(r.perSecond))} | ${median(r.cpu).toFixed(2)} | ${median(r.p50).toFixed(1)} | ${median(r.p99).toFixed(1)} |`,
    );
  }
  const [edge, mqtt] = [...results.values()];
  if (edge && mqtt && results.size === 2) {
    console.log(
      `\nedgepipe topics / mosquitto QoS 1: records/s ${(median(edge.perSecond) / median(mqtt.perSecond)).toFixed(2)}× ` +
        `(target ≥ 1), CPU per record ${(median(edge.cpu) / median(mqtt.cpu)).toFixed(2)}×, ` +
        `p50 ${(median(edge.p50) / median(mqtt.p50)).toFixed(2)}×, p99 ${(median(edge.p99) / median(mqtt.p99)).toFixed(2)}×`,
    );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  printTopicTable(await measureTopics({ rounds }), rounds);
}
