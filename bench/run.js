// `npm run bench`: edgepipe beside a minimal raw Node relay, measured side by side in one run, interleaved
// so that both see the same machine noise. Prints a Markdown table of medians.
//
//   (a) 1 GiB through one pipe, curl at both ends: MiB/s and server CPU seconds per GiB
//   (b) 300 sequential 1 KiB transfers (fetch): p50 / p99 ms from the receiver's request to its last byte
//   (c) 200 concurrent 1 MiB pipes (fetch): wall seconds
//   (d) peak server RSS over the whole run
//
// The Redis backend runs in the same rounds on a redis-server of the bench's own (free port, nothing on
// disk): once with sender and receiver on one instance, once with the sender on instance A and the
// receiver on instance B. Its rows add Redis's CPU per GiB and peak RSS, and (e) the Redis connections one
// instance holds while 1,000 receivers wait on it.
//
// piping-server itself (the protocol's origin) runs beside them when it can be installed from npm into
// bench/.work (not part of the project: only measured). Options (env): BENCH_ROUNDS (default 3),
// BENCH_GIB (default 1), BENCH_PIPING=0 to leave piping-server out, BENCH_REDIS=0 to leave the Redis rows out,
// BENCH_CLIENTS=0 to leave the client rows (bench/client-bench.js) out, BENCH_TUNNELS=0 to leave the tunnel
// rows (bench/tunnel-bench.js) out, BENCH_WORKERS=0 to leave the Workers-on-Durable-Objects and echo Worker
// rows out, BENCH_TOPICS=0 to leave the topic rows (bench/topic-bench.js: edgepipe topics beside mosquitto)
// out.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { perClientSchema } from '../dist/access/access-config.js';
import { measureClients } from './client-bench.js';
import {
  installPipingServer,
  PIPING_SERVER_VERSION,
  PipingServerInstallError,
  startPipingServer,
} from './piping-server.js';
import { cpuSeconds, peakRssMiB, treeCpuSeconds } from './proc-stats.js';
import { measureTopics, printTopicTable } from './topic-bench.js';
import { measureTunnels, printTunnelTable } from './tunnel-bench.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const GIB = Number(process.env.BENCH_GIB ?? 1);
/** `broker.objectShards` of the latency-only Durable Objects row. */
const OBJECT_SHARDS = 64;
/** A latency-only row's throughput figures: none. */
const NO_THROUGHPUT = { mibPerSecond: Number.NaN, cpuPerGiB: Number.NaN, redisCpuPerGiB: Number.NaN };

/** piping-server's entry file (installed into bench/.work once), or undefined if npm cannot install it. */
async function pipingServerEntry() {
  try {
    return await installPipingServer({ log: (line) => process.stderr.write(`${line} (for comparison)\n`) });
  } catch (error) {
    // Only measured, not part of the project: the bench goes on without it.
    if (!(error instanceof PipingServerInstallError)) throw error;
    process.stderr.write(`${error.message}\npiping-server left out of the bench.\n`);
    return undefined;
  }
}

/** A port nobody listens on right now (piping-server cannot be asked for port 0 and report it). */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/**
 * Every edgepipe here runs on its defaults, per-client limits included: the bench is one client, and the
 * limits charge what fails or waits, not transfers that complete (see README, "Limits"). The one place
 * that is many clients in truth is (e), 1,000 waiting receivers: they come from addresses of their own on
 * loopback (127.0.0.0/8 all reaches lo on Linux), as many as the per-client waiting cap asks for.
 */
const PER_CLIENT_WAITING = perClientSchema.parse({}).maxWaiting;

/** Starts a server process and resolves with its pid and base URL once it prints its port. */
async function startServer(name, command, args, env = {}) {
  const child = spawn(command, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, ...env },
    // A group of its own: wrangler starts workerd, which must go when the bench ends.
    detached: true,
  });
  let output = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start`)), 60_000);
    child.stdout.on('data', (data) => {
      output += data;
      const match = /(?:listening on|Listen HTTP on|Ready on) (?:http:\/\/[^:]+:)?(\d+)/i.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  child.stdout.resume();
  const kill = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  };
  return { name, child, pid: child.pid, url: `http://127.0.0.1:${port}`, kill };
}

/**
 * What a bench row measures: where senders and receivers go (one server, or two instances), the processes
 * whose CPU counts as the server's, and the redis-server behind it if any.
 */
function target(name, senderSide, receiverSide = senderSide, redis = undefined, gib = GIB) {
  const processes = senderSide === receiverSide ? [senderSide] : [senderSide, receiverSide];
  return {
    name,
    gib,
    sendUrl: (path) => `${senderSide.url}/${path}`,
    recvUrl: (path) => `${receiverSide.url}/${path}`,
    processes,
    serverCpu: () => processes.reduce((sum, p) => sum + treeCpuSeconds(p.pid), 0),
    redis,
  };
}

/** A redis-server of the bench's own on a free port, keeping nothing on disk. */
async function startRedis() {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  for (let i = 0; ; i++) {
    try {
      await client.connect();
      break;
    } catch (error) {
      if (i > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return { child, pid: child.pid, url, client };
}

function run(command) {
  const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'] });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`${command} exited with ${code}`);
  });
}

/** What the server may still do after a transfer ends (closing, collecting) is its CPU too: read this later. */
const CPU_SETTLE_MS = 300;

/** A file of `bytes` zeros in bench/.work (sparse: nothing is written), for uploads with a declared length. */
function zerosFile(bytes) {
  const dir = join(root, 'bench/.work');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `zeros-${bytes}`);
  if (!existsSync(file)) {
    writeFileSync(file, '');
    truncateSync(file, bytes);
  }
  return file;
}

/**
 * (a) Streams `GIB` GiB of zeros with curl at both ends (`bytes` instead for a warm-up); returns MiB/s and
 * server CPU s per GiB, the CPU of the server's whole process tree read before and 0.3 s after. The upload is
 * curl's from stdin (chunked), or, for a `declared` row, from a file (Content-Length). Local workerd answers
 * no `Expect: 100-continue`, so curl would wait 2 s before every upload to a Worker: those rows send none.
 */
async function throughput(server, round, bytes = server.gib * 1024 ** 3) {
  const path = `bench-a-${round}`;
  const cpuBefore = server.serverCpu();
  const redisBefore = server.redis ? cpuSeconds(server.redis.pid) : 0;
  const upload = `curl -sSf${server.noExpect ? " -H 'Expect:'" : ''}`;
  const from = server.declared ? `-T '${zerosFile(bytes)}'` : `-T -`;
  const input = server.declared ? '' : `head -c ${bytes} /dev/zero | `;
  const started = performance.now();
  if (server.echo) {
    // One request whose response is its own body: the sender is its own receiver.
    await run(`${input}${upload} ${from} -o /dev/null '${server.sendUrl(path)}'`);
  } else {
    const receiver = run(`curl -sSf -o /dev/null '${server.recvUrl(path)}'`);
    const sender = run(`${input}${upload} ${from} '${server.sendUrl(path)}' > /dev/null`);
    await Promise.all([receiver, sender]);
  }
  const seconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => setTimeout(resolve, CPU_SETTLE_MS));
  const gib = bytes / 1024 ** 3;
  return {
    mibPerSecond: bytes / 1024 ** 2 / seconds,
    cpuPerGiB: (server.serverCpu() - cpuBefore) / gib,
    redisCpuPerGiB: server.redis ? (cpuSeconds(server.redis.pid) - redisBefore) / gib : Number.NaN,
  };
}

/** One transfer through fetch: resolves with the receiver's bytes once both sides are done. */
async function transfer(server, path, body) {
  const received = fetch(server.recvUrl(path)).then(async (res) => {
    if (!res.ok) throw new Error(`receiver got ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  });
  const sent = fetch(server.sendUrl(path), { method: 'PUT', body }).then((res) => res.arrayBuffer());
  const [bytes] = await Promise.all([received, sent]);
  if (bytes.length !== body.length) throw new Error(`got ${bytes.length} of ${body.length} bytes`);
  return bytes;
}

/**
 * (b) Sequential 1 KiB transfers, receiver first, each from the receiver's request to its last byte, timed
 * by a client process of its own (bench/latency-client.js: node:http, keep-alive), not by this process,
 * whose own event loop would weigh on the figures. Returns every latency in ms.
 */
async function latencies(server, round, count = 300) {
  const child = spawn(
    process.execPath,
    [
      join(root, 'bench', 'latency-client.js'),
      server.recvUrl(''),
      server.sendUrl(''),
      server.echo ? '--echo' : `bench-b-${round}`,
      String(count),
    ].map((arg) => arg.replace(/\/$/, '')),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout.on('data', (data) => {
    output += data;
  });
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`the latency client exited with ${code} against ${server.name}`);
  return JSON.parse(output);
}

/** (c) `count` pipes of 1 MiB at once; returns wall seconds. */
async function concurrent(server, round, count = 200) {
  const body = new Uint8Array(1024 * 1024).fill(9);
  const started = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => transfer(server, `bench-c-${round}-${i}`, body)));
  return (performance.now() - started) / 1000;
}

/** Connections open on the bench's Redis, its own client's excepted. */
async function redisConnections(redis) {
  return (
    String(await redis.client.client('LIST'))
      .trim()
      .split('\n').length - 1
  );
}

/**
 * (e) Redis connections one instance holds while `count` receivers wait on it (each on a socket of its
 * own): the instance's own connections, measured as what it adds to the Redis's count.
 */
async function connectionsWhileWaiting(server, count = 1000) {
  const side = server.processes[0];
  // Connections of earlier rows (a Worker's per-request brokers) may still be closing: wait until the
  // count holds still.
  let before = await redisConnections(server.redis);
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = await redisConnections(server.redis);
    if (now === before) break;
    before = now;
  }
  const requests = Array.from({ length: count }, (_, i) => {
    // Half the per-client waiting cap from each address: 127.0.0.10, 127.0.0.11, ... (1,000 waiting
    // receivers are as many clients in truth)
    const localAddress = `127.0.0.${10 + Math.floor(i / (PER_CLIENT_WAITING / 2))}`;
    const request = get(`${side.url}/bench-e-${i}`, { agent: false, localAddress });
    request.on('error', () => {});
    return request;
  });
  try {
    // A Worker's health counts nothing across requests: give its receivers a few seconds to connect.
    if (server.perRequest) await new Promise((resolve) => setTimeout(resolve, 5000));
    for (let i = 0; i < 600 && !server.perRequest; i++) {
      const health = await (await fetch(`${side.url}/_/health`)).json();
      if (health.broker.waiting >= count) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const during = await redisConnections(server.redis);
    // Its long-lived connections (counted when the first instance started; none for Workers, whose brokers
    // live per request), and what the waiting receivers add.
    return (server.perRequest ? 0 : server.redis.perInstance) + (during - before);
  } finally {
    for (const request of requests) request.destroy();
  }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
};

async function main() {
  const edgepipeArgs = ['serve', '--host', '127.0.0.1', '--port', '0'];
  // Started as `npm start` does: bin/edgepipe.js, with the V8 flags of its shebang.
  const edgepipe = (name, ...extra) =>
    startServer(name, join(root, 'bin', 'edgepipe.js'), [...edgepipeArgs, ...extra]);
  const raw = await startServer('raw relay', process.execPath, ['bench/raw-relay.js', '0']);
  const memory = await edgepipe('edgepipe (memory)');
  const redis = process.env.BENCH_REDIS === '0' ? undefined : await startRedis();
  const targets = [target('raw relay', raw), target('edgepipe (memory)', memory)];
  const processes = [raw, memory];
  if (redis) {
    const one = await edgepipe('edgepipe (redis)', '--redis', redis.url);
    redis.perInstance = await redisConnections(redis);
    const a = await edgepipe('edgepipe (redis) A', '--redis', redis.url);
    const b = await edgepipe('edgepipe (redis) B', '--redis', redis.url);
    processes.push(one, a, b);
    targets.push(target('edgepipe (redis)', one, one, redis), target('edgepipe (redis) A→B', a, b, redis));
  }
  if (process.env.BENCH_RUNTIMES !== '0') {
    // The other runtimes, started as `npm run start:bun` / `start:deno` / `dev:worker` do.
    const bin = (name) => join(root, 'node_modules', '.bin', name);
    const local = { HOST: '127.0.0.1', PORT: '0' };
    const deno = [
      'run',
      '--allow-net',
      '--allow-env',
      '--allow-read',
      '--allow-run',
      '--allow-sys',
      '--v8-flags=--single-threaded-gc,--max-semi-space-size=1',
    ];
    const bunMemory = await startServer('bun (memory)', bin('bun'), ['dist/adapter/bun/index.js'], local);
    const denoMemory = await startServer(
      'deno (memory)',
      bin('deno'),
      [...deno, 'dist/adapter/deno/index.js'],
      local,
    );
    processes.push(bunMemory, denoMemory);
    targets.push(target('bun (memory)', bunMemory), target('deno (memory)', denoMemory));
    if (redis) {
      const env = { ...local, REDIS_URL: redis.url };
      const bunRedis = await startServer('bun (redis)', bin('bun'), ['dist/adapter/bun/index.js'], env);
      const denoRedis = await startServer(
        'deno (redis)',
        bin('deno'),
        [...deno, 'dist/adapter/deno/index.js'],
        env,
      );
      const workersPort = String(await freePort());
      // As `npm run dev:worker` starts it (REDIS_URL forwarded, wrangler's dev-only body draining off).
      const workers = await startServer('workers (redis)', process.execPath, ['dist/cli/dev-worker.js'], {
        HOST: '127.0.0.1',
        PORT: workersPort,
        REDIS_URL: redis.url,
        WRANGLER_SEND_METRICS: 'false',
        CI: '1',
      });
      processes.push(bunRedis, denoRedis, workers);
      // workerd moves ~10 MB/s here: a smaller body keeps a round under a minute.
      const workersGib = Math.min(GIB, 0.125);
      targets.push(
        target('bun (redis)', bunRedis, bunRedis, redis),
        target('deno (redis)', denoRedis, denoRedis, redis),
        {
          ...target(`workers (redis, ${workersGib * 1024} MiB)`, workers, workers, redis, workersGib),
          perRequest: true,
          noExpect: true,
        },
      );
    }
  }
  if (process.env.BENCH_WORKERS !== '0') {
    // Workers on Durable Objects (no Redis), beside a Worker echoing its own request body: the yardstick
    // of what workerd moves here (issue 16: the objects' row is held to 0.8x of it). Both started through
    // wrangler's API with the inspector off, as `npm run dev:worker` starts edgepipe.
    const workerEnv = { HOST: '127.0.0.1', WRANGLER_SEND_METRICS: 'false', CI: '1' };
    const devWorker = async (name, env = {}) =>
      startServer(name, process.execPath, ['dist/cli/dev-worker.js'], {
        ...workerEnv,
        PORT: String(await freePort()),
        ...env,
      });
    const objects = await devWorker('workers (durable objects)');
    const echo = await startServer('workers echo', process.execPath, ['bench/echo-worker/start.js'], {
      ...workerEnv,
      PORT: String(await freePort()),
    });
    // The same objects with `broker.objectShards`: paths hashed over warm objects instead of a new object
    // per path. Only its 1 KiB latency differs (the byte path is the same object code), so latency only.
    const shards = await devWorker('workers (durable objects, shards)', {
      EDGEPIPE_CONFIG: JSON.stringify({ broker: { objectShards: OBJECT_SHARDS } }),
    });
    processes.push(objects, echo, shards);
    const workersGib = Math.min(GIB, 0.25);
    const mib = workersGib * 1024;
    const objectsRow = (name, extra) => ({
      ...target(name, objects, objects, undefined, workersGib),
      perRequest: true,
      noExpect: true,
      ...extra,
    });
    const echoRow = (name, extra) => ({
      ...target(name, echo, echo, undefined, workersGib),
      echo: true,
      noExpect: true,
      ...extra,
    });
    // The same bytes again with a declared length (`curl -T file`): local workerd hands a chunked body to
    // the Worker in 24- and 4072-byte pieces, a Content-Length body in far larger ones. Throughput only.
    targets.push(
      objectsRow(`workers (durable objects, ${mib} MiB)`, { ratio: 'objects' }),
      echoRow(`workers echo (${mib} MiB)`, { ratio: 'echo' }),
      objectsRow(`workers (durable objects, ${mib} MiB, Content-Length)`, {
        ratio: 'objects-declared',
        declared: true,
        throughputOnly: true,
      }),
      echoRow(`workers echo (${mib} MiB, Content-Length)`, {
        ratio: 'echo-declared',
        declared: true,
        throughputOnly: true,
      }),
      {
        ...target(
          `workers (durable objects, ${OBJECT_SHARDS} shards)`,
          shards,
          shards,
          undefined,
          workersGib,
        ),
        ratio: 'objects-shards',
        perRequest: true,
        noExpect: true,
        latencyOnly: true,
      },
    );
  }
  const piping = process.env.BENCH_PIPING === '0' ? undefined : await pipingServerEntry();
  if (piping) {
    const started = {
      name: `piping-server ${PIPING_SERVER_VERSION}`,
      ...(await startPipingServer({ entry: piping })),
    };
    processes.push(started);
    targets.push(target(started.name, started));
  }
  const results = new Map(
    targets.map((t) => [t.name, { a: [], cpu: [], redisCpu: [], p50: [], p99: [], c: [] }]),
  );
  let clients;
  let tunnels;
  let topics;
  try {
    // Warm up every server (JIT, buffers, connection pools) before measuring: 64 MiB and 50 small transfers.
    for (const server of targets) {
      if (!server.latencyOnly)
        await throughput(server, 'warm', Math.min(64 * 1024 ** 2, server.gib * 1024 ** 3));
      if (!server.throughputOnly) await latencies(server, 'warm', 50);
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Order flipped each round: no server always runs right after the same neighbour.
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const server of order) {
        const r = results.get(server.name);
        const a = server.latencyOnly ? NO_THROUGHPUT : await throughput(server, round);
        r.a.push(a.mibPerSecond);
        r.cpu.push(a.cpuPerGiB);
        r.redisCpu.push(a.redisCpuPerGiB);
        // The echo Worker is no pipe: its latency is one 1 KiB request answered with itself, the floor of
        // any request through workerd (a pipe takes two).
        const lat = server.throughputOnly ? [Number.NaN] : await latencies(server, round);
        r.p50.push(quantile(lat, 0.5));
        r.p99.push(quantile(lat, 0.99));
        const noConcurrent = server.echo || server.throughputOnly || server.latencyOnly;
        r.c.push(noConcurrent ? Number.NaN : await concurrent(server, round));
        const notes = [
          server.latencyOnly ? '' : `${a.mibPerSecond.toFixed(0)} MiB/s`,
          server.throughputOnly
            ? ''
            : `p50 ${quantile(lat, 0.5).toFixed(2)} ms, p99 ${quantile(lat, 0.99).toFixed(2)} ms`,
        ];
        process.stderr.write(
          `round ${round + 1}/${ROUNDS} ${server.name}: ${notes.filter(Boolean).join(', ')}\n`,
        );
      }
    }
    for (const server of targets) {
      if (server.redis) results.get(server.name).connections = await connectionsWhileWaiting(server);
    }
    if (process.env.BENCH_CLIENTS !== '0') {
      clients = await measureClients(
        { url: memory.url, cpu: () => cpuSeconds(memory.pid) },
        {
          cli: join(root, 'bin', 'edgepipe.js'),
          rounds: ROUNDS,
          gib: GIB,
          log: (line) => process.stderr.write(`${line}\n`),
        },
      );
    }
    if (process.env.BENCH_TUNNELS !== '0') {
      tunnels = await measureTunnels(
        { url: memory.url, pid: memory.pid },
        {
          cli: join(root, 'bin', 'edgepipe.js'),
          rounds: ROUNDS,
          gib: GIB,
          log: (line) => process.stderr.write(`${line}\n`),
          redis: process.env.BENCH_TUNNEL_REDIS !== '0',
        },
      );
    }
    // After the pipe rows, with their servers still up but idle: the topic rows start brokers of their own.
    if (process.env.BENCH_TOPICS !== '0') topics = await measureTopics({ rounds: ROUNDS });
  } finally {
    for (const server of targets) {
      const r = results.get(server.name);
      r.rss = Math.max(...server.processes.map((p) => peakRssMiB(p.pid)));
      r.redisRss = server.redis ? peakRssMiB(server.redis.pid) : Number.NaN;
    }
    for (const p of processes) p.kill();
    redis?.client.disconnect();
    redis?.child.kill('SIGKILL');
  }

  const rawResult = results.get('raw relay');
  const dash = (value, digits) => (Number.isNaN(value) || value === undefined ? '–' : value.toFixed(digits));
  // wrangler's own process is what the bench started; workerd, which runs the Worker, is its child. CPU is
  // the whole tree's (wrangler's dev tooling included, so an upper bound for workerd); a peak RSS of a tree
  // is no one process's VmHWM, so the Workers row has none.
  const measured = (name) => !name.startsWith('workers');
  const rows = [...results].map(([name, r]) => [
    name,
    dash(median(r.a), 0),
    dash(median(r.cpu), 2),
    dash(median(r.redisCpu), 2),
    dash(median(r.p50), 2),
    dash(median(r.p99), 2),
    dash(median(r.c), 2),
    measured(name) ? `${r.rss.toFixed(0)}` : '–',
    dash(r.redisRss, 0),
    dash(r.connections, 1),
  ]);
  const header = [
    'server',
    `(a) ${GIB} GiB MiB/s`,
    '(a) server CPU s/GiB',
    '(a) Redis CPU s/GiB',
    '(b) 1 KiB p50 ms',
    '(b) 1 KiB p99 ms',
    '(c) 200×1 MiB s',
    '(d) peak RSS MiB',
    '(d) Redis peak RSS MiB',
    '(e) Redis conns, 1000 waiting',
  ];
  console.log(
    `\nMedians of ${ROUNDS} interleaved rounds (node ${process.version}, ${new Date().toISOString()})\n`,
  );
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
  if (clients) printClientTable(clients);
  if (tunnels) printTunnelTable(tunnels);
  if (topics) printTopicTable(topics, ROUNDS);
  const byRatio = (role) => results.get(targets.find((t) => t.ratio === role)?.name);
  const objects = byRatio('objects');
  const echo = byRatio('echo');
  if (objects && echo) {
    const declared = byRatio('objects-declared');
    const echoDeclared = byRatio('echo-declared');
    console.log(
      `\nworkers (durable objects) / workers echo: throughput ${(median(objects.a) / median(echo.a)).toFixed(2)}× (target ≥ 0.8), ` +
        `${(median(declared.a) / median(echoDeclared.a)).toFixed(2)}× with Content-Length; ` +
        `1 KiB p50 / edgepipe (memory) on Node: ${(median(objects.p50) / median(results.get('edgepipe (memory)').p50)).toFixed(2)}× (target ≤ 2), ` +
        `${(median(byRatio('objects-shards').p50) / median(results.get('edgepipe (memory)').p50)).toFixed(2)}× with ${OBJECT_SHARDS} shards; ` +
        `the echo Worker's own 1 KiB round trip / Node's pipe: ${(median(echo.p50) / median(results.get('edgepipe (memory)').p50)).toFixed(2)}× (the floor)`,
    );
  }
  for (const name of ['edgepipe (memory)', 'edgepipe (redis)', 'edgepipe (redis) A→B']) {
    const edge = results.get(name);
    if (!edge) continue;
    console.log(
      `\n${name} / raw: throughput ${(median(edge.a) / median(rawResult.a)).toFixed(2)}×, ` +
        `p99 ${(median(edge.p99) / median(rawResult.p99)).toFixed(2)}×, ` +
        `200-pipe wall ${(median(edge.c) / median(rawResult.c)).toFixed(2)}×, ` +
        `CPU/GiB ${(median(edge.cpu) / median(rawResult.cpu)).toFixed(2)}×`,
    );
  }
}

/** The client rows: each mode's medians, and its throughput against curl's at both ends. */
function printClientTable(clients) {
  const curl = median(clients.get('curl → curl').mibs);
  console.log(`\nClients through edgepipe (memory), ${GIB} GiB, medians of ${ROUNDS} interleaved rounds\n`);
  console.log('| client | MiB/s | × curl | client CPU s/GiB (both ends) | server CPU s/GiB |');
  console.log('|---|---|---|---|---|');
  for (const [name, r] of clients) {
    console.log(
      `| ${name} | ${median(r.mibs).toFixed(0)} | ${(median(r.mibs) / curl).toFixed(2)} | ` +
        `${median(r.clientCpu).toFixed(2)} | ${median(r.serverCpu).toFixed(2)} |`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
