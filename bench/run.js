// `npm run bench`: edgepipe beside a minimal raw Node relay, measured side by side in one run, interleaved
// so that both see the same machine noise. Prints a Markdown table of medians.
//
//   (a) 1 GiB through one pipe, curl at both ends: MiB/s and server CPU seconds per GiB
//   (b) 300 sequential 1 KiB transfers (fetch): p50 / p99 ms from the receiver's request to its last byte
//   (c) 200 concurrent 1 MiB pipes (fetch): wall seconds
//   (d) peak server RSS over the whole run
//
// piping-server itself (the protocol's origin) runs beside them when it can be installed from npm into
// bench/.work (not part of the project: only measured). Options (env): BENCH_ROUNDS (default 3),
// BENCH_GIB (default 1), BENCH_PIPING=0 to leave piping-server out.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, peakRssMiB } from './proc-stats.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const GIB = Number(process.env.BENCH_GIB ?? 1);

const PIPING_VERSION = '1.12.9';

/** Installs piping-server into bench/.work once; returns its entry file, or undefined if npm cannot. */
function pipingServerEntry() {
  const work = join(root, 'bench', '.work');
  const entry = join(work, 'node_modules', 'piping-server', 'dist', 'src', 'index.js');
  if (!existsSync(entry)) {
    process.stderr.write(`installing piping-server@${PIPING_VERSION} into bench/.work for comparison...\n`);
    const result = spawnSync(
      'npm',
      [
        'install',
        '--prefix',
        work,
        '--no-save',
        '--no-audit',
        '--no-fund',
        `piping-server@${PIPING_VERSION}`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 },
    );
    if (result.status !== 0) return undefined;
  }
  return entry;
}

/** A port nobody listens on right now (piping-server cannot be asked for port 0 and report it). */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/** Starts a server process and resolves with its pid and base URL once it prints its port. */
async function startServer(name, command, args) {
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start`)), 10_000);
    child.stdout.on('data', (data) => {
      output += data;
      const match = /(?:listening on|Listen HTTP on) (?:http:\/\/[^:]+:)?(\d+)/i.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  child.stdout.resume();
  return { name, child, pid: child.pid, url: `http://127.0.0.1:${port}` };
}

function run(command) {
  const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'] });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`${command} exited with ${code}`);
  });
}

/** (a) Streams `GIB` GiB of zeros with curl at both ends; returns MiB/s and server CPU s per GiB. */
async function throughput(server, round) {
  const url = `${server.url}/bench-a-${round}`;
  const bytes = GIB * 1024 ** 3;
  const cpuBefore = cpuSeconds(server.pid);
  const started = performance.now();
  const receiver = run(`curl -sSf -o /dev/null '${url}'`);
  const sender = run(`head -c ${bytes} /dev/zero | curl -sSf -T - '${url}' > /dev/null`);
  await Promise.all([receiver, sender]);
  const seconds = (performance.now() - started) / 1000;
  return { mibPerSecond: bytes / 1024 ** 2 / seconds, cpuPerGiB: (cpuSeconds(server.pid) - cpuBefore) / GIB };
}

/** One transfer through fetch: resolves with the receiver's bytes once both sides are done. */
async function transfer(url, body) {
  const received = fetch(url).then(async (res) => {
    if (!res.ok) throw new Error(`receiver got ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  });
  const sent = fetch(url, { method: 'PUT', body }).then((res) => res.arrayBuffer());
  const [bytes] = await Promise.all([received, sent]);
  if (bytes.length !== body.length) throw new Error(`got ${bytes.length} of ${body.length} bytes`);
  return bytes;
}

/** (b) Sequential 1 KiB transfers; returns every latency in ms. */
async function latencies(server, round, count = 300) {
  const body = new Uint8Array(1024).fill(7);
  const samples = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await transfer(`${server.url}/bench-b-${round}-${i}`, body);
    samples.push(performance.now() - started);
  }
  return samples;
}

/** (c) `count` pipes of 1 MiB at once; returns wall seconds. */
async function concurrent(server, round, count = 200) {
  const body = new Uint8Array(1024 * 1024).fill(9);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: count }, (_, i) => transfer(`${server.url}/bench-c-${round}-${i}`, body)),
  );
  return (performance.now() - started) / 1000;
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
  const servers = [
    await startServer('raw relay', process.execPath, ['bench/raw-relay.js', '0']),
    // Started as `npm start` does: bin/edgepipe.js, with the V8 flags of its shebang.
    await startServer('edgepipe (memory)', join(root, 'bin', 'edgepipe.js'), [
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
    ]),
  ];
  const piping = process.env.BENCH_PIPING === '0' ? undefined : pipingServerEntry();
  if (piping) {
    const args = [piping, '--host', '127.0.0.1', '--http-port', String(await freePort())];
    servers.push(await startServer(`piping-server ${PIPING_VERSION}`, process.execPath, args));
  }
  const results = new Map(servers.map((s) => [s.name, { a: [], cpu: [], p50: [], p99: [], c: [] }]));
  try {
    // Warm up every server (JIT, connection pools) before measuring.
    for (const server of servers) await latencies(server, 'warm', 50);
    for (let round = 0; round < ROUNDS; round++) {
      for (const server of servers) {
        const r = results.get(server.name);
        const a = await throughput(server, round);
        r.a.push(a.mibPerSecond);
        r.cpu.push(a.cpuPerGiB);
        const lat = await latencies(server, round);
        r.p50.push(quantile(lat, 0.5));
        r.p99.push(quantile(lat, 0.99));
        r.c.push(await concurrent(server, round));
        process.stderr.write(
          `round ${round + 1}/${ROUNDS} ${server.name}: ${a.mibPerSecond.toFixed(0)} MiB/s, ` +
            `p50 ${quantile(lat, 0.5).toFixed(2)} ms, p99 ${quantile(lat, 0.99).toFixed(2)} ms\n`,
        );
      }
    }
  } finally {
    for (const server of servers) results.get(server.name).rss = peakRssMiB(server.pid);
    for (const server of servers) server.child.kill('SIGKILL');
  }

  const raw = results.get('raw relay');
  const rows = [...results].map(([name, r]) => [
    name,
    `${median(r.a).toFixed(0)}`,
    `${median(r.cpu).toFixed(2)}`,
    `${median(r.p50).toFixed(2)}`,
    `${median(r.p99).toFixed(2)}`,
    `${median(r.c).toFixed(2)}`,
    `${r.rss.toFixed(0)}`,
  ]);
  const header = [
    'server',
    `(a) ${GIB} GiB MiB/s`,
    '(a) server CPU s/GiB',
    '(b) 1 KiB p50 ms',
    '(b) 1 KiB p99 ms',
    '(c) 200×1 MiB s',
    '(d) peak RSS MiB',
  ];
  console.log(
    `\nMedians of ${ROUNDS} interleaved rounds (node ${process.version}, ${new Date().toISOString()})\n`,
  );
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
  const edge = results.get('edgepipe (memory)');
  console.log(
    `\nedgepipe / raw: throughput ${(median(edge.a) / median(raw.a)).toFixed(2)}×, ` +
      `p99 ${(median(edge.p99) / median(raw.p99)).toFixed(2)}×, ` +
      `200-pipe wall ${(median(edge.c) / median(raw.c)).toFixed(2)}×, ` +
      `CPU/GiB ${(median(edge.cpu) / median(raw.cpu)).toFixed(2)}×`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
