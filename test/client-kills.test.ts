// `edgepipe send` and `edgepipe recv` as real processes against real brokers, killed (SIGKILL) at random
// points and run again with the same arguments; the broker instances themselves killed and restarted on
// their port. Every transfer must end byte-exact with exit 0 on its last runs. Sizes, kill points and victims
// come from a seeded PRNG: the seed is printed, and EDGEPIPE_KILLS_SEED=<seed> replays that plan (the
// processes' timing still differs from run to run).
// Needs `npm run build` (the clients are this worktree's bin/edgepipe.js) and redis-server on PATH.
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { repoRoot, type ServerProcess, spawnListening } from './helpers/processes.js';
import { freePort, startTestRedis, type TestRedis } from './helpers/redis-server.js';

const BIN = join(repoRoot, 'bin', 'edgepipe.js');
const MAIN = join(repoRoot, 'dist', 'cli', 'main.js');
const MiB = 1024 * 1024;
/** Quick retries, so a restarted peer or instance is found within a second. */
const QUICK = ['--retry-base', '100ms', '--retry-cap', '1s'];
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const work = mkdtempSync(join(tmpdir(), 'edgepipe-kills-'));

const SEED = Number(process.env.EDGEPIPE_KILLS_SEED ?? Date.now() % 2 ** 31);
console.log(`client-kills: seed ${SEED} (replay with EDGEPIPE_KILLS_SEED=${SEED})`);

/** mulberry32: a small seeded PRNG, so a failing run can be replayed from its seed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Writes `size` reproducible bytes (an AES-CTR keystream of `label`) to `path`; returns their SHA-256. */
function writeInput(path: string, size: number, label: string): string {
  const key = createHash('sha256').update(label).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(4 * MiB);
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < size; at += zeros.byteLength) {
      const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.byteLength, size - at)));
      hash.update(chunk);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const sizeOf = (path: string) => statSync(path, { throwIfNoEntry: false })?.size ?? 0;

async function until(probe: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await delay(5);
  }
}

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  readonly ms: number;
}

/** One run of `edgepipe send|recv`, as a user's shell runs it. */
class Cli {
  readonly child: ChildProcess;
  readonly exit: Promise<Exit>;
  private err = '';
  private readonly started = Date.now();

  constructor(
    readonly args: readonly string[],
    options: { stateDir: string; cwd?: string; stdinFile?: string; timeoutMs?: number },
  ) {
    this.child = spawn(BIN, args, {
      cwd: options.cwd ?? work,
      env: { ...process.env, EDGEPIPE_STATE_DIR: options.stateDir },
      stdio: [options.stdinFile ? 'pipe' : 'ignore', 'ignore', 'pipe'],
    });
    this.child.stderr!.on('data', (d) => {
      this.err += d;
    });
    if (options.stdinFile) {
      // Piped, not redirected: stdin is a one-shot stream, so a resume needs the replay buffer.
      this.child.stdin!.on('error', () => {});
      createReadStream(options.stdinFile).pipe(this.child.stdin!);
    }
    const timer = setTimeout(() => {
      this.err += '\n[test] timed out: SIGKILL\n';
      this.child.kill('SIGKILL');
    }, options.timeoutMs ?? 60_000);
    this.exit = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr: this.err, ms: Date.now() - this.started });
      }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGKILL, as a crash or `kill -9` does; true when that is how it ended (not on its own just before). */
  async kill(): Promise<boolean> {
    if (!this.running) return false;
    this.child.kill('SIGKILL');
    return (await this.exit).signal === 'SIGKILL';
  }

  stderr(): string {
    return this.err;
  }
}

/** An edgepipe instance on a port of its own, which a SIGKILL and a restart keep. */
class Instance {
  private server: ServerProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly args: readonly string[],
  ) {}

  static async start(args: readonly string[]): Promise<Instance> {
    const instance = new Instance(await freePort(), args);
    await instance.start();
    return instance;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = await spawnListening(process.execPath, [
      MAIN,
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      String(this.port),
      ...this.args,
    ]);
  }

  /** SIGKILL: no goodbye to its clients or to Redis (its heartbeat key expires on its own). */
  async kill(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.kill();
    await server.exited();
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }
}

/** Every stderr line that is a JSON object (`--progress json`). */
function jsonLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function report(runs: readonly Cli[], exits: readonly Exit[]): string {
  return runs
    .map((run, i) => {
      const exit = exits[i];
      const how = exit ? `exit ${exit.code ?? exit.signal} after ${exit.ms} ms` : 'running';
      return `$ edgepipe ${run.args.join(' ')}  (${how})\n${run.stderr().slice(-3000)}`;
    })
    .join('\n');
}

let redis: TestRedis;
let a: Instance;
let b: Instance;
/** A third instance whose dropped parties keep their place only 1.5 s: a held transfer lapses quickly. */
let shortGrace: Instance;
const spawned: Cli[] = [];

function cli(args: readonly string[], options: ConstructorParameters<typeof Cli>[1]): Cli {
  const run = new Cli(args, options);
  spawned.push(run);
  return run;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error('dist/ is missing: run `npm run build` first');
  redis = await startTestRedis();
  const graceFile = join(work, 'short-grace.json');
  writeFileSync(graceFile, JSON.stringify({ broker: { resumeGraceMs: 1500 } }));
  [a, b, shortGrace] = await Promise.all([
    Instance.start(['--redis', redis.url]),
    Instance.start(['--redis', redis.url]),
    Instance.start(['--redis', redis.url, '--config', graceFile]),
  ]);
}, 60_000);

afterAll(async () => {
  for (const run of spawned) run.child.kill('SIGKILL');
  await Promise.all([a?.kill(), b?.kill(), shortGrace?.kill()]);
  await redis?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Whether a command left its state file in `dir` (`send-*.json` or `recv-*.json`). */
function hasState(dir: string, direction: 'send' | 'recv'): boolean {
  return (
    existsSync(dir) &&
    readdirSync(dir).some((name) => name.startsWith(`${direction}-`) && name.endsWith('.json'))
  );
}

/**
 * SIGKILLs a client while its state file exists: once the transfer has begun for it and before it ended.
 * Stopped (SIGSTOP) while its state is looked at, so it cannot move on meanwhile. Without state there is
 * nothing a re-run could continue from: a receiver killed between the server's start and its own reading of
 * the response headers (NOTES-kills.md), or either side killed after it cleared its state on its way out
 * (done: a re-run would be a new transfer). Then it runs on until its state appears (and is killed then,
 * 'later') or it ends by itself (false).
 */
async function killOnceBegun(
  run: Cli,
  stateDir: string,
  direction: 'send' | 'recv',
): Promise<boolean | 'later'> {
  if (!run.running) return false;
  run.child.kill('SIGSTOP');
  if (hasState(stateDir, direction)) return run.kill();
  run.child.kill('SIGCONT');
  await until(() => hasState(stateDir, direction) || !run.running, `the ${direction} run began`);
  run.child.kill('SIGSTOP');
  if (hasState(stateDir, direction)) return (await run.kill()) && 'later';
  // It finished (and removed its state) between the look and the stop: left stopped, it would never exit.
  run.child.kill('SIGCONT');
  return false;
}

/** What happens to one transfer of the soak. */
interface Plan {
  readonly size: number;
  readonly senderFirst: boolean;
  readonly gapMs: number;
  /** Kill once the output holds this many bytes, or after this long. */
  readonly trigger: { readonly bytes: number } | { readonly ms: number };
  readonly kill: ReadonlyArray<'sender' | 'receiver' | 'A' | 'B'>;
}

function planOf(i: number, random: () => number): Plan {
  // Alternating victims, sometimes both; three transfers lose a broker instance (one with its client).
  const instanceKill = ({ 6: ['A'], 11: ['B'], 16: ['A', 'sender'] } as Record<number, Plan['kill']>)[i];
  const victims: Plan['kill'] =
    instanceKill ?? (random() < 0.2 ? ['sender', 'receiver'] : i % 2 === 0 ? ['sender'] : ['receiver']);
  // An instance is killed mid-body: a transfer long enough to still be running when it dies.
  const size = instanceKill
    ? 16 * MiB + Math.floor(random() * 32 * MiB)
    : i === 3
      ? 0
      : random() < 0.15
        ? Math.floor(random() * 256 * 1024)
        : 1 + Math.floor(random() * 48 * MiB);
  const byBytes = instanceKill !== undefined || (size > MiB && random() < 0.75);
  return {
    size,
    senderFirst: random() < 0.5,
    gapMs: Math.floor(random() * 300),
    trigger: byBytes
      ? { bytes: Math.floor(size * (instanceKill ? 0.1 + 0.3 * random() : 0.05 + 0.85 * random())) }
      : { ms: 50 + Math.floor(random() * 1200) },
    kill: victims,
  };
}

describe('send and recv killed and run again, on two instances sharing Redis', () => {
  it('20 transfers, each killed at a random point (sender, receiver, both, or an instance): byte-exact, exit 0', async () => {
    const random = seeded(SEED);
    const started = Date.now();
    let instanceKills = 0;
    const log: string[] = [];
    onTestFinished(() => console.log(`seed ${SEED}\n${log.join('\n')}`));
    for (let i = 0; i < 20; i++) {
      const plan = planOf(i, random);
      const stateDir = join(work, `state-soak-${i}`);
      const input = join(work, `soak-${i}.in`);
      const output = join(work, `soak-${i}.out`);
      const digest = writeInput(input, plan.size, `${SEED}:${i}`);
      const sendArgs = ['send', ...QUICK, `${a.url}/soak/${SEED}/${i}`, input];
      const recvArgs = ['recv', ...QUICK, `${b.url}/soak/${SEED}/${i}`, output];
      const runs: Cli[] = [];
      const startSender = () => runs[runs.push(cli(sendArgs, { stateDir, timeoutMs: 30_000 })) - 1]!;
      const startReceiver = () => runs[runs.push(cli(recvArgs, { stateDir, timeoutMs: 30_000 })) - 1]!;
      let sender: Cli;
      let receiver: Cli;
      if (plan.senderFirst) {
        sender = startSender();
        await delay(plan.gapMs);
        receiver = startReceiver();
      } else {
        receiver = startReceiver();
        await delay(plan.gapMs);
        sender = startSender();
      }
      const t0 = Date.now();
      const trigger = plan.trigger;
      await until(
        () =>
          'bytes' in trigger
            ? sizeOf(output) >= trigger.bytes || !receiver.running || !sender.running
            : Date.now() - t0 >= trigger.ms,
        `transfer ${i} reached its kill point`,
      );
      const at = sizeOf(output);
      const killed: string[] = [];
      // The clients first, then the instance: a re-run sender may come back while its instance is down.
      const receiverKilled =
        plan.kill.includes('receiver') && (await killOnceBegun(receiver, stateDir, 'recv'));
      const senderKilled = plan.kill.includes('sender') && (await killOnceBegun(sender, stateDir, 'send'));
      if (senderKilled) killed.push(`sender${senderKilled === 'later' ? ' (once it had begun)' : ''}`);
      if (receiverKilled) killed.push(`receiver${receiverKilled === 'later' ? ' (once it had begun)' : ''}`);
      if (senderKilled) sender = startSender();
      for (const name of ['A', 'B'] as const) {
        if (!plan.kill.includes(name)) continue;
        const instance = name === 'A' ? a : b;
        if (sender.running && receiver.running) instanceKills += 1;
        await instance.kill();
        killed.push(`instance ${name}`);
        await delay(100);
        await instance.start();
      }
      if (receiverKilled) receiver = startReceiver();
      const [sent, received] = await Promise.all([sender.exit, receiver.exit]);
      const exits = await Promise.all(runs.map((run) => run.exit));
      const why = `seed ${SEED}, transfer ${i}, plan ${JSON.stringify(plan)}, killed at ${at} B: ${killed.join(', ') || 'nothing (both had ended)'}\n${report(runs, exits)}`;
      expect(sent.code, why).toBe(0);
      expect(received.code, why).toBe(0);
      expect(await sha256File(output), why).toBe(digest);
      log.push(
        `transfer ${String(i).padStart(2)}: ${(plan.size / MiB).toFixed(2).padStart(6)} MiB, killed ${killed.join(' + ') || 'nothing (ended first)'} at ${at} B, ${runs.length} runs, ${Date.now() - t0} ms`,
      );
      rmSync(input, { force: true });
      rmSync(output, { force: true });
    }
    // At least two of the instance kills hit a transfer in flight (not one that had ended already).
    expect(instanceKills).toBeGreaterThanOrEqual(2);
    log.push(`soak: 20 transfers in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 150_000);
});

/** The one state file a command keeps in `dir` (`send-*.json` or `recv-*.json`), once it exists. */
async function stateFile(dir: string, direction: 'send' | 'recv'): Promise<{ path: string; text: string }> {
  let found: { path: string; text: string } | undefined;
  await until(() => {
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      if (!name.startsWith(`${direction}-`) || !name.endsWith('.json')) continue;
      try {
        found = { path: join(dir, name), text: readFileSync(join(dir, name), 'utf8') };
        return true;
      } catch {
        // Renamed over or removed between the listing and the read: look again.
      }
    }
    return false;
  }, `a ${direction} state file in ${dir}`);
  return found!;
}

describe('a run killed after its last byte, run again', () => {
  // The state a run leaves when it is killed after the broker (or the output file) had every byte but before
  // it could clear its state: recorded while the transfer runs, put back after it ended.
  it('send: the transfer ended on the server without it: the re-run ends well instead of opening a new one', async () => {
    const stateDir = join(work, 'state-send-ended');
    const input = join(work, 'ended.in');
    const output = join(work, 'ended.out');
    const digest = writeInput(input, 24 * MiB, 'ended');
    const url = `${a.url}/ended/send`;
    const receiver = cli(['recv', ...QUICK, `${b.url}/ended/send`, output], { stateDir });
    const sender = cli(['send', ...QUICK, '--sha256', url, input], { stateDir });
    const saved = await stateFile(stateDir, 'send');
    const [sent, received] = await Promise.all([sender.exit, receiver.exit]);
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    expect(existsSync(saved.path)).toBe(false);
    writeFileSync(saved.path, saved.text);

    const again = await cli(['send', ...QUICK, '--sha256', url, input], { stateDir, timeoutMs: 10_000 }).exit;
    expect(again.code, again.stderr).toBe(0);
    // Its digest covers the file although it sent nothing: both runs print the same.
    expect(again.stderr).toContain(`sha256 ${digest}`);
    expect(sent.stderr).toContain(`sha256 ${digest}`);
    expect(existsSync(saved.path)).toBe(false);
  }, 30_000);

  it('recv: the output file is whole already: the re-run ends well instead of asking past the end', async () => {
    const stateDir = join(work, 'state-recv-whole');
    const input = join(work, 'whole.in');
    const output = join(work, 'whole.out');
    const digest = writeInput(input, 24 * MiB, 'whole');
    const recvArgs = ['recv', ...QUICK, `${b.url}/ended/recv`, output];
    const receiver = cli(recvArgs, { stateDir });
    const sender = cli(['send', ...QUICK, `${a.url}/ended/recv`, input], { stateDir });
    const saved = await stateFile(stateDir, 'recv');
    const [sent, received] = await Promise.all([sender.exit, receiver.exit]);
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    writeFileSync(saved.path, saved.text);

    const again = await cli(recvArgs, { stateDir, timeoutMs: 10_000 }).exit;
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`continuing ${output} at byte ${24 * MiB}`);
    expect(await sha256File(output)).toBe(digest);
  }, 30_000);
});

describe('a sender killed behind a full window, a receiver killed before its first byte', () => {
  it("the sender's re-run waits until the server counts its killed run as gone, then continues", async () => {
    // With its receiver not reading, the server stops reading the upload: the killed sender's last bytes
    // and its FIN wait in the kernel, and the server counts it as connected until the window moves again.
    const stateDir = join(work, 'state-full-window');
    const input = join(work, 'full-window.in');
    const output = join(work, 'full-window.out');
    const digest = writeInput(input, 40 * MiB, 'full-window');
    const sendArgs = ['send', ...QUICK, `${a.url}/full-window/killed`, input];
    const receiver = cli(['recv', ...QUICK, `${b.url}/full-window/killed`, output], { stateDir });
    const sender = cli(sendArgs, { stateDir });
    await until(() => sizeOf(output) >= 4 * MiB || !receiver.running, 'the receiver has 4 MiB');
    receiver.child.kill('SIGSTOP');
    await delay(500);
    expect(await sender.kill()).toBe(true);
    await delay(200);
    const head = await fetch(`${a.url}/full-window/killed`, { method: 'HEAD' });
    expect(head.headers.get('x-edgepipe-state')).toBe('transferring');
    expect(head.headers.get('x-edgepipe-sender')).toBe('connected');

    const resent = cli(sendArgs, { stateDir });
    await delay(1500);
    expect(resent.running, resent.stderr()).toBe(true);
    receiver.child.kill('SIGCONT');
    const [sent, received] = await Promise.all([resent.exit, receiver.exit]);
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    expect(sent.stderr).toContain("the server still counts the interrupted run's sender as connected");
    expect(sent.stderr).toMatch(/continuing an interrupted transfer at byte \d+/);
    expect(await sha256File(output)).toBe(digest);
  }, 30_000);

  it('a receiver killed after the transfer began for it, before its output file existed, takes its own place back', async () => {
    const stateDir = join(work, 'state-zero');
    const input = join(work, 'zero.in');
    const output = join(work, 'zero.out');
    const digest = writeInput(input, 32 * MiB, 'zero');
    const recvArgs = ['recv', ...QUICK, `${b.url}/zero/kept`, output];
    const receiver = cli(recvArgs, { stateDir });
    const sender = cli(['send', ...QUICK, `${a.url}/zero/kept`, input], { stateDir });
    await stateFile(stateDir, 'recv');
    receiver.child.kill('SIGSTOP');
    expect(await receiver.kill()).toBe(true);
    // As if killed between saving its state and creating the output file: nothing of it on disk.
    rmSync(output, { force: true });
    const received = await cli(recvArgs, { stateDir }).exit;
    expect(received.code, received.stderr).toBe(0);
    expect(received.stderr).toContain(`continuing ${output} at byte 0`);
    const sent = await sender.exit;
    expect(sent.code, sent.stderr).toBe(0);
    expect(await sha256File(output)).toBe(digest);
  }, 30_000);
});

describe('stdin through the replay buffer', () => {
  it("the sender's instance is killed mid-body and restarted on its port: the sender resumes from its replay buffer, byte-exact", async () => {
    const stateDir = join(work, 'state-stdin');
    const input = join(work, 'stdin.in');
    const output = join(work, 'stdin.out');
    const digest = writeInput(input, 40 * MiB, 'stdin');
    const receiver = cli(['recv', ...QUICK, `${b.url}/stdin/replayed`, output], { stateDir });
    const sender = cli(['send', ...QUICK, '--progress', 'json', `${a.url}/stdin/replayed`, '-'], {
      stateDir,
      stdinFile: input,
    });
    await until(() => sizeOf(output) >= 6 * MiB || !receiver.running, 'the receiver has 6 MiB');
    expect(sender.running).toBe(true);
    await a.kill();
    await a.start();
    const [sent, received] = await Promise.all([sender.exit, receiver.exit]);
    expect(sent.code, report([sender, receiver], [sent, received])).toBe(0);
    expect(received.code, report([sender, receiver], [sent, received])).toBe(0);
    expect(await sha256File(output)).toBe(digest);
    const last = jsonLines(sent.stderr).at(-1)!;
    expect(last.state).toBe('done');
    expect(last.resumes).toBeGreaterThanOrEqual(1);
  }, 40_000);

  it('a 64 KiB replay buffer no longer holds the broker offset: a clear line and exit 4', async () => {
    const stateDir = join(work, 'state-stdin-tiny');
    const input = join(work, 'stdin-tiny.in');
    const output = join(work, 'stdin-tiny.out');
    writeInput(input, 40 * MiB, 'stdin-tiny');
    const receiver = cli(['recv', ...QUICK, `${b.url}/stdin/tiny`, output], { stateDir });
    const sender = cli(['send', ...QUICK, '--replay-buffer', '64KiB', `${a.url}/stdin/tiny`, '-'], {
      stateDir,
      stdinFile: input,
    });
    await until(() => sizeOf(output) >= 6 * MiB || !receiver.running, 'the receiver has 6 MiB');
    expect(sender.running).toBe(true);
    await a.kill();
    await a.start();
    const sent = await sender.exit;
    expect(sent.code, sent.stderr).toBe(4);
    expect(sent.stderr).toMatch(
      /edgepipe: cannot resume at byte \d+: the replay buffer only holds bytes from \d+ on \(raise --replay-buffer above 65536 bytes\)/,
    );
    await receiver.kill();
  }, 40_000);
});

describe('a file changed between a kill and the re-run', () => {
  it('appended: the re-run refuses (exit 5); once the held transfer lapses, --no-resume starts over and succeeds', async () => {
    const stateDir = join(work, 'state-changed');
    const input = join(work, 'changed.in');
    const output = join(work, 'changed.out');
    writeInput(input, 32 * MiB, 'changed');
    const sendArgs = ['send', ...QUICK, `${shortGrace.url}/changed/appended`, input];
    const recvArgs = ['recv', ...QUICK, `${shortGrace.url}/changed/appended`, output];
    const receiver = cli(recvArgs, { stateDir });
    const sender = cli(sendArgs, { stateDir });
    await until(() => sizeOf(output) >= 4 * MiB || !receiver.running, 'the receiver has 4 MiB');
    expect(await sender.kill()).toBe(true);
    appendFileSync(input, 'one more line\n');

    const refused = await cli(sendArgs, { stateDir, timeoutMs: 15_000 }).exit;
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr).toContain(
      `edgepipe: ${input} changed since an interrupted transfer of it; refusing to resume with other bytes (--no-resume starts over)`,
    );
    // The broker holds the interrupted transfer for its grace period (1.5 s here), then ends it: the
    // receiver learns that its sender is gone for good.
    const lapsed = await receiver.exit;
    expect(lapsed.code, lapsed.stderr).toBe(6);

    const digest = await sha256File(input);
    const [sent, received] = await Promise.all([
      cli([...sendArgs, '--no-resume'], { stateDir }).exit,
      cli([...recvArgs, '--no-resume'], { stateDir }).exit,
    ]);
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    expect(await sha256File(output)).toBe(digest);
  }, 40_000);

  it('rewritten with the same size: the re-run refuses (exit 5)', async () => {
    const stateDir = join(work, 'state-rewritten');
    const input = join(work, 'rewritten.in');
    const output = join(work, 'rewritten.out');
    writeInput(input, 32 * MiB, 'rewritten');
    const sendArgs = ['send', ...QUICK, `${a.url}/changed/rewritten`, input];
    const receiver = cli(['recv', ...QUICK, `${b.url}/changed/rewritten`, output], { stateDir });
    const sender = cli(sendArgs, { stateDir });
    await until(() => sizeOf(output) >= 4 * MiB || !receiver.running, 'the receiver has 4 MiB');
    expect(await sender.kill()).toBe(true);
    writeInput(input, 32 * MiB, 'other bytes');
    const refused = await cli(sendArgs, { stateDir, timeoutMs: 15_000 }).exit;
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr).toContain('changed since an interrupted transfer of it');
    await receiver.kill();
  }, 30_000);
});

describe('the in-memory broker', () => {
  let memory: Instance;
  const stateDir = join(work, 'state-memory');
  beforeAll(async () => {
    memory = await Instance.start([]);
  });
  afterAll(async () => {
    await memory?.kill();
  });

  it('both sides say that resume is unavailable; a killed receiver ends the sender (exit 6)', async () => {
    const input = join(work, 'memory.in');
    writeInput(input, 40 * MiB, 'memory');
    const output = join(work, 'memory.out');
    const receiver = cli(['recv', ...QUICK, `${memory.url}/m/receiver-killed`, output], { stateDir });
    const sender = cli(['send', ...QUICK, `${memory.url}/m/receiver-killed`, input], { stateDir });
    await until(() => sizeOf(output) >= 4 * MiB || !receiver.running, 'the receiver has 4 MiB');
    const notice =
      'edgepipe: this server cannot resume (in-memory broker): a break after the start ends the transfer';
    expect(receiver.stderr()).toContain(notice);
    expect(await receiver.kill()).toBe(true);
    const sent = await sender.exit;
    expect(sent.code, sent.stderr).toBe(6);
    expect(sent.stderr).toContain(notice);
    expect(sent.stderr).toContain('edgepipe: every receiver left before the end');
  }, 30_000);

  it('a killed server ends both sides with exit 4 and a line saying why, without retrying for ever', async () => {
    const input = join(work, 'memory.in');
    const output = join(work, 'memory-server-killed.out');
    const receiver = cli(['recv', ...QUICK, `${memory.url}/m/server-killed`, output], { stateDir });
    const sender = cli(['send', ...QUICK, `${memory.url}/m/server-killed`, input], { stateDir });
    await until(() => sizeOf(output) >= 4 * MiB || !receiver.running, 'the receiver has 4 MiB');
    const killedAt = Date.now();
    await memory.kill();
    const [sent, received] = await Promise.all([sender.exit, receiver.exit]);
    for (const exit of [sent, received]) {
      expect(exit.code, exit.stderr).toBe(4);
      expect(exit.stderr).toMatch(
        /edgepipe: the connection broke during the transfer \([^)]+\) and this server cannot resume it/,
      );
    }
    expect(Date.now() - killedAt).toBeLessThan(5000);
    await memory.start();
  }, 30_000);

  it('before the first byte it retries: recv started before the server is up gets through once it is', async () => {
    await memory.kill();
    const input = join(work, 'early.in');
    const digest = writeInput(input, 2 * MiB, 'early');
    const output = join(work, 'early.out');
    const receiver = cli(['recv', ...QUICK, `${memory.url}/m/early`, output], { stateDir });
    await delay(1500);
    expect(receiver.running).toBe(true);
    await memory.start();
    const sent = await cli(['send', ...QUICK, `${memory.url}/m/early`, input], { stateDir }).exit;
    const received = await receiver.exit;
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    expect(await sha256File(output)).toBe(digest);
    // Backoff with jitter below a cap that doubles from 100 ms to 1 s: several tries, each one said.
    const retries = received.stderr.match(/ECONNREFUSED: retrying in \d+\.\d s \(attempt \d+\)/g) ?? [];
    expect(retries.length).toBeGreaterThanOrEqual(2);
  }, 30_000);
});

describe('retry budget and refusals', () => {
  const stateDir = join(work, 'state-refusals');

  it('--retry-for 2s against a port nobody listens on: exit 4 within a few seconds, saying it gave up', async () => {
    const port = await freePort();
    const input = join(work, 'small.in');
    writeInput(input, 1000, 'small');
    const [received, sent] = await Promise.all([
      cli(
        ['recv', ...QUICK, '--retry-for', '2s', `http://127.0.0.1:${port}/nobody`, join(work, 'nobody.out')],
        {
          stateDir,
        },
      ).exit,
      cli(['send', ...QUICK, '--retry-for', '2s', `http://127.0.0.1:${port}/nobody`, input], { stateDir })
        .exit,
    ]);
    for (const exit of [received, sent]) {
      expect(exit.code, exit.stderr).toBe(4);
      expect(exit.stderr).toMatch(/^edgepipe: gave up.*ECONNREFUSED/m);
      expect(exit.ms).toBeLessThan(6000);
    }
  }, 20_000);

  it('-n 0 is a usage error (exit 2); a send to a reserved path is the server refusing (exit 3, its reason, no retry)', async () => {
    const input = join(work, 'small.in');
    const usage = await cli(['send', '-n', '0', `${a.url}/n/zero`, input], { stateDir }).exit;
    expect(usage.code, usage.stderr).toBe(2);
    expect(usage.stderr).toContain("-n should be a whole number of receivers, not '0'");

    const refused = await cli(['send', ...QUICK, '--progress', 'json', `${a.url}/help`, input], { stateDir })
      .exit;
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toContain(
      "edgepipe: the server refused it (400): Cannot send to the reserved path '/help'.",
    );
    expect(refused.stderr).not.toContain('retrying');
    expect(refused.ms).toBeLessThan(5000);
  }, 20_000);
});

describe('what the commands print and name', () => {
  const stateDir = join(work, 'state-output');

  it('--sha256 prints the same digest on both sides; --expect-sha256 with a wrong digest exits 5', async () => {
    const input = join(work, 'digest.in');
    const digest = writeInput(input, 3 * MiB + 5, 'digest');
    const [sent, received] = await Promise.all([
      cli(['send', ...QUICK, '--sha256', `${a.url}/sha/ok`, input], { stateDir }).exit,
      cli(['recv', ...QUICK, '--sha256', `${b.url}/sha/ok`, join(work, 'digest.out')], { stateDir }).exit,
    ]);
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    expect(sent.stderr).toContain(`sha256 ${digest}\n`);
    expect(received.stderr).toContain(`sha256 ${digest}\n`);

    const wrong = 'ab'.repeat(32);
    const [sent2, checked] = await Promise.all([
      cli(['send', ...QUICK, `${a.url}/sha/wrong`, input], { stateDir }).exit,
      cli(['recv', ...QUICK, '--expect-sha256', wrong, `${b.url}/sha/wrong`, join(work, 'digest2.out')], {
        stateDir,
      }).exit,
    ]);
    expect(sent2.code, sent2.stderr).toBe(0);
    expect(checked.code, checked.stderr).toBe(5);
    expect(checked.stderr).toContain(`edgepipe: SHA-256 mismatch: expected ${wrong}, got ${digest}`);
  }, 30_000);

  it("-O names the output after the sender's --filename, reduced to its base name", async () => {
    const input = join(work, 'named.in');
    const digest = writeInput(input, 1 * MiB, 'named');
    const cwd = join(work, 'named', 'sub', 'deeper');
    mkdirSync(cwd, { recursive: true });
    for (const [filename, expected] of [
      ['report.txt', 'report.txt'],
      ['../../etc/x', 'x'],
    ] as const) {
      const [sent, received] = await Promise.all([
        cli(['send', ...QUICK, '--filename', filename, `${a.url}/named/${expected}`, input], { stateDir })
          .exit,
        cli(['recv', ...QUICK, '-O', `${b.url}/named/${expected}`], { stateDir, cwd }).exit,
      ]);
      expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
      expect(await sha256File(join(cwd, expected))).toBe(digest);
    }
    expect(existsSync(join(cwd, '..', '..', 'etc'))).toBe(false);
  }, 30_000);

  it('--progress=json prints one JSON object a line with bytes and total; a non-TTY stderr gets no bar', async () => {
    const input = join(work, 'progress.in');
    const size = 16 * MiB;
    writeInput(input, size, 'progress');
    const [sent, received] = await Promise.all([
      cli(['send', ...QUICK, '--progress=json', `${a.url}/progress/json`, input], { stateDir }).exit,
      cli(['recv', ...QUICK, `${b.url}/progress/json`, join(work, 'progress.out')], { stateDir }).exit,
    ]);
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0]);
    const lines = sent.stderr.split('\n').filter((line) => line !== '');
    const objects = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const figures = objects.filter((object) => 'bytes' in object);
    expect(figures.length).toBeGreaterThanOrEqual(1);
    for (const object of figures) {
      expect(typeof object.bytes).toBe('number');
      expect(object.total === null || typeof object.total === 'number').toBe(true);
    }
    expect(figures.at(-1)).toMatchObject({ state: 'done', bytes: size, total: size });
    expect(received.stderr).not.toContain('\r');
    expect(received.stderr).not.toContain('\x1b');
  }, 30_000);
});
