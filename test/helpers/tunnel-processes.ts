import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './processes.js';

/** An `edgepipe expose` or `edgepipe connect --listen` process, its stderr log read as it comes. */
export interface TunnelProcess {
  readonly child: ChildProcess;
  log(): string;
  /** Resolves once the log matches `pattern` (counting from the start), or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `node dist/cli/main.js <args>` (expose or connect) with `env` added. */
export function spawnTunnel(args: readonly string[], env: NodeJS.ProcessEnv = {}): TunnelProcess {
  const child = spawn(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const listeners = new Set<() => void>();
  const onData = (data: Buffer) => {
    log += data;
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    log: () => log,
    waitFor: (pattern, timeoutMs = 20_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!pattern.test(log)) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no ${pattern} within ${timeoutMs} ms; log:\n${log}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
    exited: () => exit,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}
