import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunResult, repoRoot, run } from './processes.js';

/** `edgepipe <args>` from this worktree's build (`npm run build` first), to its end. */
export function edgepipe(
  args: readonly string[],
  options: { input?: Uint8Array | string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], options);
}

/** A running `edgepipe <args>` whose stdin the test writes; stdout and stderr collected. */
export interface EdgepipeProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited(): Promise<number | null>;
}

export function spawnEdgepipe(args: readonly string[], env: NodeJS.ProcessEnv = {}): EdgepipeProcess {
  const child = spawn(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  child.stdin!.on('error', () => {});
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited: () => exit };
}

/** A JSON config file for `edgepipe serve --config`. */
export function configFile(config: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'edgepipe-topics-')), 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** Polls `check` every 50 ms until it is true, or fails after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
