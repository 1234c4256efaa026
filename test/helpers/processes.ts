import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Runs a command to its end (bounded by `timeoutMs`), collecting its output; `env` adds to this process's. */
export function run(
  command: string,
  args: readonly string[],
  options: { input?: Uint8Array | string; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.cwd && { cwd: options.cwd }),
      ...(options.env && { env: { ...process.env, ...options.env } }),
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input);
  });
}

/** A child process that prints `listening on http://host:port` when ready. */
export interface ServerProcess {
  readonly child: ChildProcess;
  readonly url: string;
  output(): string;
  rssMiB(): number;
  exited(): Promise<number | null>;
  /** SIGKILLs the process and everything it started. */
  kill(): void;
}

/** Starts `node dist/cli/main.js serve` (built by `npm test` before vitest) on a free port. */
export function spawnServer(
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<ServerProcess> {
  return spawnListening(
    process.execPath,
    [join(repoRoot, 'dist/cli/main.js'), 'serve', '--host', '127.0.0.1', '--port', '0', ...args],
    env,
  );
}

/** The runtimes edgepipe's entries run on, each started as `npm start` / `npm run start:<runtime>` do. */
export const ENTRY_RUNTIMES = ['node', 'bun', 'deno'] as const;
export type EntryRuntime = (typeof ENTRY_RUNTIMES)[number];

/** The command and arguments of a runtime's entry, before the flags of `edgepipe serve`. */
export function entryCommand(runtime: EntryRuntime): [string, string[]] {
  const bin = (name: string) => join(repoRoot, 'node_modules', '.bin', name);
  switch (runtime) {
    case 'node':
      return [process.execPath, [join(repoRoot, 'dist/cli/main.js'), 'serve']];
    case 'bun':
      return [bin('bun'), [join(repoRoot, 'dist/adapter/bun/index.js')]];
    case 'deno':
      return [bin('deno'), ['run', '-A', join(repoRoot, 'dist/adapter/deno/index.js')]];
  }
}

/** Starts any command that prints `listening on http://host:port` once it serves (every runtime's entry). */
export async function spawnListening(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<ServerProcess> {
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A group of its own, so `kill()` reaches what it starts too (wrangler runs workerd, which would be
    // left behind, busy, if only wrangler died).
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 30_000);
    const check = () => {
      // edgepipe's own entries print `listening on <url>`; wrangler dev prints `Ready on <url>`.
      const match = /(?:listening on|Ready on) (https?:\/\/[\w.:[\]-]+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', check);
    exit.then(() => reject(new Error(`server exited:\n${output}`)));
  });
  return {
    child,
    url,
    output: () => output,
    rssMiB: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
    },
    exited: () => exit,
    kill: () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    },
  };
}
