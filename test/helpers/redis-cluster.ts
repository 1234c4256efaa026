import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { run } from './processes.js';
import { freePort } from './redis-server.js';

/** A Redis Cluster of the test's own: three masters, no replicas, on free ports, keeping nothing. */
export interface TestCluster {
  /** Where a cluster client starts: every master (any one would do). */
  readonly seeds: { host: string; port: number }[];
  readonly ports: number[];
  /** Kills every node (SIGKILL) and removes their working dirs. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const MASTERS = 3;
const READY_TIMEOUT_MS = 10_000;
const CREATE_TIMEOUT_MS = 20_000;
const STATE_OK_TIMEOUT_MS = 20_000;
const EXIT_TIMEOUT_MS = 5_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A plain one-shot client: no retries, so a node that is not up yet fails fast and we poll again. */
async function withClient<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    port,
    host: HOST,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** Polls `check` until it holds; past `timeoutMs` throws with `what` and the last thing seen. */
async function waitFor(what: string, timeoutMs: number, check: () => Promise<true | string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'never checked';
  for (;;) {
    try {
      const result = await check();
      if (result === true) return;
      last = result;
    } catch (error) {
      last = String(error);
    }
    if (Date.now() >= deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting until ${what} (${last})`);
    await sleep(50);
  }
}

interface Node {
  readonly port: number;
  readonly dir: string;
  readonly child: ChildProcess;
  readonly log: () => string;
}

async function startNode(): Promise<Node> {
  const port = await freePort();
  // The cluster bus defaults to port + 10000, which may be taken or beyond 65535: give it a free port too.
  const busPort = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'edgepipe-cluster-'));
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--cluster-port',
      String(busPort),
      '--bind',
      HOST,
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout',
      '2000',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Kept for the error message: a node that dies at start says why only here.
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (error) => keep(Buffer.from(`spawn failed: ${error.message}\n`)));
  return { port, dir, child, log: () => output };
}

async function killNode(node: Node): Promise<void> {
  const { child } = node;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(EXIT_TIMEOUT_MS)]);
  }
  await rm(node.dir, { recursive: true, force: true });
}

async function waitForPing(node: Node): Promise<void> {
  await waitFor(`redis-server on ${node.port} answers PING`, READY_TIMEOUT_MS, async () => {
    if (node.child.exitCode !== null) {
      throw new Error(`redis-server on ${node.port} exited with ${node.child.exitCode}: ${node.log()}`);
    }
    return (await withClient(node.port, (c) => c.ping())) === 'PONG' ? true : 'no PONG';
  });
}

/**
 * A node that answers PING. A free port may be taken by someone else between our probe and the node's bind
 * (test files run in parallel): then it starts again on other ports.
 */
async function startReadyNode(): Promise<Node> {
  for (let attempt = 1; ; attempt++) {
    const node = await startNode();
    try {
      await waitForPing(node);
      return node;
    } catch (error) {
      await killNode(node);
      if (attempt >= 5 || !node.log().includes('Address already in use')) throw error;
    }
  }
}

/**
 * Starts a local 3-master Redis Cluster (`redis-server` and `redis-cli` must be on PATH; `.ci/run` installs
 * both): every node on free ports with its own temp dir, slots spread by `redis-cli --cluster create`, and
 * resolves once every node reports `cluster_state:ok`. On any failure the nodes started so far are killed.
 */
export async function startTestCluster(): Promise<TestCluster> {
  const nodes: Node[] = [];
  const stop = async () => {
    await Promise.all(nodes.splice(0).map(killNode));
  };
  try {
    for (let i = 0; i < MASTERS; i++) nodes.push(await startReadyNode());
    const created = await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `${HOST}:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeoutMs: CREATE_TIMEOUT_MS },
    );
    if (created.code !== 0) {
      throw new Error(
        `redis-cli --cluster create failed (${created.code ?? created.signal}): ${created.stdout}${created.stderr}`,
      );
    }
    // `create` returns once slots are assigned; the nodes agree a moment later, through gossip.
    await Promise.all(
      nodes.map((node) =>
        waitFor(`node ${node.port} reports cluster_state:ok`, STATE_OK_TIMEOUT_MS, async () => {
          const info = await withClient(node.port, (c) => c.cluster('INFO'));
          return /cluster_state:ok/.test(info) ? true : (/cluster_state:\w+/.exec(info)?.[0] ?? info);
        }),
      ),
    );
    const ports = nodes.map((n) => n.port);
    return { seeds: ports.map((port) => ({ host: HOST, port })), ports, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
