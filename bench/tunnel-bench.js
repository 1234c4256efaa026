// The tunnel rows of `npm run bench`: `edgepipe expose` and `edgepipe connect --listen` (bin/edgepipe.js, as
// users run them) through the bench's in-memory broker, each figure beside a reference measured in the same
// rounds:
//
//   (t1) BENCH_GIB GiB through one tunnelled TCP connection into a sink that answers the byte count at the
//        client's half-close, vs the same bytes through one plain pipe with curl at both ends; MiB/s, and the
//        CPU seconds per GiB of expose, connect, the broker and the two ends (from /proc and bash's `time`)
//   (t2) 200 sequential connections through the tunnel to an echo service: connect, send 1 byte, time until
//        it comes back, close; p50 / p99 ms, vs the same echo dialled directly
//   (t3) redis-benchmark (-c 50 -n 20000 -t set,get) through the tunnel vs direct, on a redis-server of the
//        bench's own (left out when redis-server or redis-benchmark is missing, or BENCH_TUNNEL_REDIS=0)
//
// Runs from bench/run.js (BENCH_TUNNELS=0 leaves it out) or on its own after `npm run build`:
// `node bench/tunnel-bench.js` starts a broker as `npm start` does. BENCH_TUNNEL_PROF=<dir> runs expose and
// connect under `--cpu-prof` and leaves their profiles in <dir>.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpuSeconds } from './proc-stats.js';
import { outputOf, timed } from './timed-command.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The services behind the tunnels, in a process of their own (so their CPU is not the bench's): a sink that
 * reads everything and answers `<bytes>\n` when the client half-closes, and an echo. Prints their ports.
 */
const SERVICES = `
const net = require('node:net');
const listen = (server) => new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port)));
const sink = net.createServer({ allowHalfOpen: true }, (socket) => {
  let bytes = 0;
  socket.on('error', () => {});
  socket.on('data', (chunk) => { bytes += chunk.length; });
  socket.on('end', () => socket.end(bytes + '\\n'));
});
const echo = net.createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('error', () => {});
  socket.pipe(socket);
});
Promise.all([listen(sink), listen(echo)]).then(([s, e]) => console.log('sink ' + s + ' echo ' + e));
`;

/**
 * The client of (t1): pipes stdin into 127.0.0.1:<port>, half-closes at stdin's end, prints what the
 * service answers, and exits once the service closes.
 */
const STREAM_CLIENT = `
const socket = require('node:net').connect({ host: '127.0.0.1', port: Number(process.argv[1]), allowHalfOpen: true });
let answer = '';
socket.setEncoding('utf8');
socket.on('data', (text) => { answer += text; });
socket.on('end', () => { process.stdout.write(answer); socket.end(); });
process.stdin.pipe(socket);
`;

/** A port nobody listens on right now (redis-server and `connect --listen` are given one). */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/**
 * Spawns a long-running process and resolves once its output (stdout and stderr) matches `ready`, with the
 * match. Only the last few KiB of output are kept, for the error message if it exits.
 */
async function startProcess(name, command, args, ready, env = {}) {
  const child = spawn(command, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let output = '';
  const match = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output}`)), 30_000);
    const onData = (data) => {
      output = (output + data).slice(-4096);
      const found = ready.exec(output);
      if (found) {
        clearTimeout(timer);
        resolvePromise(found);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${output}`));
    });
  });
  // Keep reading (a full stderr pipe would stall the process), remembering the tail for errors.
  child.stdout.removeAllListeners('data');
  child.stderr.removeAllListeners('data');
  const keep = (data) => {
    output = (output + data).slice(-4096);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return {
    name,
    child,
    pid: child.pid,
    match,
    log: () => output,
    /** SIGINT first, so a `--cpu-prof` process writes its profile; SIGKILL if it is not gone in 3 s. */
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The node flags on `cli`'s first line (`#!/usr/bin/env -S node <flags>`). */
function shebangFlags(cli) {
  const first = readFileSync(cli, 'utf8').split('\n', 1)[0];
  return first
    .replace(/^#!.*?\bnode\b/, '')
    .trim()
    .split(/\s+/)
    .filter(Boolean);
}

/** `edgepipe expose <name> --to 127.0.0.1:<port>` and `edgepipe connect <name> --listen`, both ready. */
async function startTunnel(cli, broker, name, servicePort, profileDir) {
  // Node refuses --cpu-prof in NODE_OPTIONS: under a profile, node runs the CLI with the V8 flags of its
  // shebang (read from it, so they stay the same) and the profile's.
  const command = profileDir ? process.execPath : cli;
  const prefix = profileDir ? [...shebangFlags(cli), '--cpu-prof', `--cpu-prof-dir=${profileDir}`, cli] : [];
  const expose = await startProcess(
    `expose ${name}`,
    command,
    [...prefix, 'expose', name, '--server', broker.url, '--to', `127.0.0.1:${servicePort}`],
    /exposing /,
  );
  try {
    const port = await freePort();
    const connector = await startProcess(
      `connect ${name}`,
      command,
      [...prefix, 'connect', name, '--server', broker.url, '--listen', `127.0.0.1:${port}`],
      /listening on /,
    );
    return { expose, connect: connector, port, stop: () => Promise.all([expose.stop(), connector.stop()]) };
  } catch (error) {
    await expose.stop();
    throw error;
  }
}

/** Seconds and CPU seconds of `work`, for each process in `pids` (read from /proc before and after). */
async function measured(pids, work) {
  const before = pids.map((pid) => cpuSeconds(pid));
  const started = performance.now();
  const result = await work();
  const seconds = (performance.now() - started) / 1000;
  return { seconds, cpu: pids.map((pid, i) => cpuSeconds(pid) - before[i]), result };
}

/** (t1) through the tunnel: `bytes` of zeros into the sink, the clock stopped by the sink's answer. */
async function throughTunnel(tunnel, broker, services, bytes) {
  const client = `head -c ${bytes} /dev/zero | '${process.execPath}' -e "$BENCH_STREAM_CLIENT" ${tunnel.port}`;
  const run = await measured([tunnel.expose.pid, tunnel.connect.pid, broker.pid, services.pid], () =>
    timed(client, { BENCH_STREAM_CLIENT: STREAM_CLIENT }),
  );
  const answer = run.result.stdout.trim();
  if (answer !== String(bytes)) throw new Error(`the sink counted ${answer || 'nothing'} of ${bytes} bytes`);
  const [expose, connector, brokerCpu, sink] = run.cpu;
  return { seconds: run.seconds, expose, connect: connector, broker: brokerCpu, ends: run.result.cpu + sink };
}

/** (t1) the reference: the same bytes through one plain pipe with curl at both ends. */
async function throughCurl(broker, path, bytes) {
  const url = `${broker.url}/${path}`;
  const run = await measured([broker.pid], () =>
    Promise.all([
      timed(`curl -sSf -o /dev/null '${url}'`),
      timed(`head -c ${bytes} /dev/zero | curl -sSf -T - '${url}' > /dev/null`),
    ]),
  );
  return { seconds: run.seconds, broker: run.cpu[0], ends: run.result[0].cpu + run.result[1].cpu };
}

/** Milliseconds from dialling 127.0.0.1:`port` until a byte sent comes back; then closes (FIN both ways). */
function echoOnce(port) {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no echo from port ${port} within 20 s`));
    }, 20_000);
    let ms;
    socket.once('connect', () => socket.write('x'));
    socket.once('data', () => {
      ms = performance.now() - started;
      socket.end();
    });
    socket.on('end', () => socket.end());
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (ms === undefined) reject(new Error(`port ${port} closed before the echo`));
      else resolvePromise(ms);
    });
  });
}

/** (t2) `count` sequential echo round trips on a fresh connection each; every latency in ms. */
async function echoLatencies(port, count) {
  const samples = [];
  for (let i = 0; i < count; i++) samples.push(await echoOnce(port));
  return samples;
}

/** A redis-server of the bench's own on a free port, keeping nothing on disk; resolves once it answers. */
async function startRedisServer() {
  const port = await freePort();
  const server = await startProcess(
    'redis-server (tunnel bench)',
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    /Ready to accept connections/,
  );
  return { ...server, port };
}

/** (t3) redis-benchmark against 127.0.0.1:`port`; requests per second of each test (SET, GET). */
async function redisBenchmark(port) {
  const child = spawn(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-c', '50', '-n', '20000', '-t', 'set,get', '-q', '--csv'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const { code, stdout, stderr } = await outputOf(child);
  if (code !== 0) throw new Error(`redis-benchmark exited with ${code}: ${stderr}`);
  // "test","rps",... then one line per test: "SET","40983.61",...
  const rps = {};
  for (const match of stdout.matchAll(/^"(\w+)","([\d.]+)"/gm)) rps[match[1]] = Number(match[2]);
  if (!rps.SET || !rps.GET) throw new Error(`no SET/GET figures from redis-benchmark: ${stdout}${stderr}`);
  return rps;
}

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

/**
 * Measures the tunnel rows against `broker` for `rounds` interleaved rounds (each pair's order flipped every
 * round, so neither always runs on a warmer or busier machine).
 * @param {{ url: string; pid: number }} broker the broker process (its URL, and its pid for /proc)
 * @param {{ cli: string; rounds: number; gib: number; log: (line: string) => void; redis?: boolean; profileDir?: string }} options
 */
export async function measureTunnels(broker, { cli, rounds, gib, log, redis = true, profileDir }) {
  const bytes = Math.round(gib * 1024 ** 3);
  const results = {
    rounds,
    gib,
    tunnel: { mibs: [], expose: [], connect: [], broker: [], ends: [] },
    curl: { mibs: [], broker: [], ends: [] },
    echo: { tunnel: [], direct: [] },
    redis: undefined,
  };
  const stops = [];
  /** Every process started, for its log's tail when a step fails. */
  const started = [];
  try {
    const services = await startProcess(
      'tunnel bench services',
      process.execPath,
      ['-e', SERVICES],
      /sink (\d+) echo (\d+)/,
    );
    stops.push(services.stop);
    started.push(services);
    const [sinkPort, echoPort] = [Number(services.match[1]), Number(services.match[2])];
    const tag = `${process.pid}-${Date.now().toString(36)}`;
    const sinkTunnel = await startTunnel(cli, broker, `bench-tunnel-sink-${tag}`, sinkPort, profileDir);
    stops.push(sinkTunnel.stop);
    started.push(sinkTunnel.expose, sinkTunnel.connect);
    const echoTunnel = await startTunnel(cli, broker, `bench-tunnel-echo-${tag}`, echoPort, profileDir);
    stops.push(echoTunnel.stop);
    started.push(echoTunnel.expose, echoTunnel.connect);
    let redisTunnel;
    let redisServer;
    if (redis && has('redis-server') && has('redis-benchmark')) {
      redisServer = await startRedisServer();
      stops.push(redisServer.stop);
      redisTunnel = await startTunnel(cli, broker, `bench-tunnel-redis-${tag}`, redisServer.port, profileDir);
      stops.push(redisTunnel.stop);
      started.push(redisTunnel.expose, redisTunnel.connect);
      results.redis = { tunnel: { SET: [], GET: [] }, direct: { SET: [], GET: [] }, failures: [] };
    } else if (redis) {
      log('redis-server or redis-benchmark not found: the redis-benchmark tunnel rows are left out');
    }

    // Warm up (JIT of every process on the way, the broker's pools) before measuring.
    await throughTunnel(sinkTunnel, broker, services, 64 * 1024 ** 2);
    await throughCurl(broker, `bench-tunnel-warm-${tag}`, 64 * 1024 ** 2);
    await echoLatencies(echoTunnel.port, 20);
    await echoLatencies(echoPort, 20);

    for (let round = 0; round < rounds; round++) {
      const flip = round % 2 === 1;
      const t1 = [
        async () => {
          const r = await throughTunnel(sinkTunnel, broker, services, bytes);
          results.tunnel.mibs.push(bytes / 1024 ** 2 / r.seconds);
          for (const key of ['expose', 'connect', 'broker', 'ends']) results.tunnel[key].push(r[key] / gib);
          log(
            `tunnel round ${round + 1}/${rounds} tunnel: ${(bytes / 1024 ** 2 / r.seconds).toFixed(0)} MiB/s`,
          );
        },
        async () => {
          const r = await throughCurl(broker, `bench-tunnel-curl-${tag}-${round}`, bytes);
          results.curl.mibs.push(bytes / 1024 ** 2 / r.seconds);
          results.curl.broker.push(r.broker / gib);
          results.curl.ends.push(r.ends / gib);
          log(
            `tunnel round ${round + 1}/${rounds} curl → curl: ${(bytes / 1024 ** 2 / r.seconds).toFixed(0)} MiB/s`,
          );
        },
      ];
      const t2 = [
        async () => results.echo.tunnel.push(await echoLatencies(echoTunnel.port, 200)),
        async () => results.echo.direct.push(await echoLatencies(echoPort, 200)),
      ];
      const t3 = redisTunnel
        ? [
            async () => {
              // A run that fails through the tunnel is a finding, not the end of the bench: counted and shown.
              let rps;
              try {
                rps = await redisBenchmark(redisTunnel.port);
              } catch (error) {
                results.redis.failures.push(error.message.trim());
                log(
                  `tunnel round ${round + 1}/${rounds} redis-benchmark through the tunnel FAILED: ${error.message.trim()}`,
                );
                log(
                  `--- expose (last output):\n${redisTunnel.expose.log()}\n--- connect (last output):\n${redisTunnel.connect.log()}`,
                );
                return;
              }
              results.redis.tunnel.SET.push(rps.SET);
              results.redis.tunnel.GET.push(rps.GET);
              log(
                `tunnel round ${round + 1}/${rounds} redis-benchmark through the tunnel: SET ${rps.SET}/s, GET ${rps.GET}/s`,
              );
            },
            async () => {
              const rps = await redisBenchmark(redisServer.port);
              results.redis.direct.SET.push(rps.SET);
              results.redis.direct.GET.push(rps.GET);
            },
          ]
        : [];
      for (const pair of [t1, t2, t3]) {
        for (const step of flip ? [...pair].reverse() : pair) await step();
      }
      const last = results.echo.tunnel.at(-1);
      log(
        `tunnel round ${round + 1}/${rounds} echo through the tunnel: p50 ${quantile(last, 0.5).toFixed(2)} ms`,
      );
    }
    return results;
  } catch (error) {
    for (const p of started) log(`--- ${p.name} (last output):\n${p.log()}`);
    throw error;
  } finally {
    // Last started, first stopped: connect before expose before the service behind them.
    for (const stop of stops.reverse()) await stop().catch(() => {});
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

/** Prints the tunnel rows as a Markdown table of medians over the rounds, then one line per figure. */
export function printTunnelTable(results) {
  const { rounds, gib, tunnel, curl, echo, redis } = results;
  const mib = { tunnel: median(tunnel.mibs), curl: median(curl.mibs) };
  // Each round's p50 / p99 over its 200 connections, then the median over rounds.
  const lat = (rounds_, q) => median(rounds_.map((samples) => quantile(samples, q)));
  const echoes = {
    tunnelP50: lat(echo.tunnel, 0.5),
    tunnelP99: lat(echo.tunnel, 0.99),
    directP50: lat(echo.direct, 0.5),
    directP99: lat(echo.direct, 0.99),
  };
  const f = (value, digits) => value.toFixed(digits);
  const rows = [
    [
      `${gib} GiB through one connection, MiB/s`,
      f(mib.tunnel, 0),
      `${f(mib.curl, 0)} (curl → curl pipe)`,
      f(mib.tunnel / mib.curl, 2),
    ],
    ['CPU s/GiB: expose', f(median(tunnel.expose), 2), '–', '–'],
    ['CPU s/GiB: connect', f(median(tunnel.connect), 2), '–', '–'],
    [
      'CPU s/GiB: broker',
      f(median(tunnel.broker), 2),
      f(median(curl.broker), 2),
      f(median(tunnel.broker) / median(curl.broker), 2),
    ],
    [
      'CPU s/GiB: the ends (client + sink; curl + curl)',
      f(median(tunnel.ends), 2),
      f(median(curl.ends), 2),
      f(median(tunnel.ends) / median(curl.ends), 2),
    ],
    [
      'new connection + 1-byte echo, p50 ms',
      f(echoes.tunnelP50, 2),
      `${f(echoes.directP50, 2)} (direct)`,
      f(echoes.tunnelP50 / echoes.directP50, 1),
    ],
    [
      'new connection + 1-byte echo, p99 ms',
      f(echoes.tunnelP99, 2),
      `${f(echoes.directP99, 2)} (direct)`,
      f(echoes.tunnelP99 / echoes.directP99, 1),
    ],
  ];
  // Medians over the rounds that completed (a failed run through the tunnel is counted apart).
  const ran = redis && redis.tunnel.SET.length > 0;
  const failed = redis ? `, ${redis.failures.length} of ${rounds} runs through the tunnel failed` : '';
  if (ran) {
    for (const test of ['SET', 'GET']) {
      const through = median(redis.tunnel[test]);
      const direct = median(redis.direct[test]);
      rows.push([
        `redis-benchmark ${test} (-c 50), requests/s`,
        f(through, 0),
        `${f(direct, 0)} (direct)`,
        f(through / direct, 3),
      ]);
    }
  }
  console.log(`\nTunnels through edgepipe (memory), medians of ${rounds} interleaved rounds\n`);
  console.log('| figure | through the tunnel | reference | tunnel / reference |');
  console.log('|---|---|---|---|');
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
  console.log(
    `\ntunnel / curl throughput: ${f(mib.tunnel / mib.curl, 2)}× (${f(mib.tunnel, 0)} vs ${f(mib.curl, 0)} MiB/s; issue target ≥ 0.8×)`,
  );
  console.log(
    `tunnel CPU per GiB: expose ${f(median(tunnel.expose), 2)} s, connect ${f(median(tunnel.connect), 2)} s, ` +
      `broker ${f(median(tunnel.broker), 2)} s (curl pipe: broker ${f(median(curl.broker), 2)} s)`,
  );
  console.log(
    `connection set-up + echo through the tunnel: p50 ${f(echoes.tunnelP50, 2)} ms, p99 ${f(echoes.tunnelP99, 2)} ms ` +
      `(direct: p50 ${f(echoes.directP50, 2)} ms, p99 ${f(echoes.directP99, 2)} ms)`,
  );
  if (ran) {
    for (const test of ['SET', 'GET']) {
      const through = median(redis.tunnel[test]);
      const direct = median(redis.direct[test]);
      console.log(
        `redis-benchmark ${test} through the tunnel: ${f(through, 0)} requests/s, ${f(through / direct, 3)}× direct (${f(direct, 0)})${failed}`,
      );
    }
  }
  if (redis && !ran)
    console.log(`redis-benchmark through the tunnel: every run failed${failed}: ${redis.failures[0]}`);
}

/** Standalone: a broker started as `npm start` starts it, then the tunnel rows alone. */
async function main() {
  const cli = join(root, 'bin', 'edgepipe.js');
  const broker = await startProcess(
    'edgepipe (memory)',
    cli,
    ['serve', '--host', '127.0.0.1', '--port', '0'],
    /listening on http:\/\/[^:]+:(\d+)/,
  );
  try {
    const results = await measureTunnels(
      { url: `http://127.0.0.1:${broker.match[1]}`, pid: broker.pid },
      {
        cli,
        rounds: Number(process.env.BENCH_ROUNDS ?? 3),
        gib: Number(process.env.BENCH_GIB ?? 1),
        log: (line) => process.stderr.write(`${line}\n`),
        redis: process.env.BENCH_TUNNEL_REDIS !== '0',
        profileDir: process.env.BENCH_TUNNEL_PROF ? resolve(process.env.BENCH_TUNNEL_PROF) : undefined,
      },
    );
    printTunnelTable(results);
  } finally {
    await broker.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
