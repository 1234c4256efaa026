/**
 * Hook commands on Node: no shell, the hook's budget enforced with SIGKILL, and only the tail of the output
 * kept for the audit line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { CommandRunner } from '../../selfheal/hook-types.js';

const OUTPUT_TAIL_BYTES = 4096;
// How long stdout/stderr may stay open after the command exited: a background process it left behind holds
// them for as long as it lives, and the hook is over when the command is.
const STDIO_GRACE_MS = 100;
// Beyond a signed 32-bit delay, timers fire at once (Node warns), which would kill every command.
const MAX_TIMER_MS = 2_147_483_647;
// Own process group (POSIX only: on Windows `detached` opens a console), so a timeout kills what the command
// started too, not just the command; a shell script's `sleep` would otherwise outlive it and hold its pipes.
const OWN_GROUP = process.platform !== 'win32';

/**
 * Runs `argv` without a shell, with `env` over this process's environment; at `timeoutMs` the command and its
 * process group are killed with SIGKILL (`timedOut`). Resolves once the command has exited with the last 4 KiB of
 * stdout and stderr interleaved; rejects when the command cannot start (not found, not executable, empty argv).
 */
export const runCommand: CommandRunner = (argv, env, timeoutMs) =>
  new Promise((resolve, reject) => {
    const program = argv[0];
    if (program === undefined) {
      reject(new Error('empty command: argv names no program'));
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(program, argv.slice(1), {
        shell: false,
        detached: OWN_GROUP,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (error) {
      // Bad arguments (a NUL byte, say) throw here instead of emitting 'error'.
      reject(startError(program, error));
      return;
    }

    let tail = Buffer.alloc(0);
    const keep = (chunk: Buffer) => {
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > OUTPUT_TAIL_BYTES) tail = tail.subarray(tail.length - OUTPUT_TAIL_BYTES);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);

    let timedOut = false;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const killTimer = setTimeout(
      () => {
        timedOut = true;
        kill(child);
      },
      Math.min(Math.max(timeoutMs, 0), MAX_TIMER_MS),
    );
    const stopTimers = () => {
      clearTimeout(killTimer);
      clearTimeout(graceTimer);
    };

    child.once('exit', () => {
      clearTimeout(killTimer);
      graceTimer = setTimeout(() => {
        child.stdout!.destroy();
        child.stderr!.destroy();
      }, STDIO_GRACE_MS);
    });
    child.once('error', (error) => {
      stopTimers();
      // Also emitted when a kill fails; the command may then still be running, so don't leave it behind.
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) kill(child);
      reject(startError(program, error));
    });
    child.once('close', (exitCode, signal) => {
      stopTimers();
      resolve({ exitCode, signal, timedOut, output: tail.toString('utf8') });
    });
  });

function kill(child: ChildProcess): void {
  if (OWN_GROUP && child.pid !== undefined) {
    try {
      // A negative pid addresses the process group `detached` made the command the leader of.
      process.kill(-child.pid, 'SIGKILL');
      return;
    } catch {
      // The group is gone already (ESRCH); the direct kill below is then a harmless no-op.
    }
  }
  child.kill('SIGKILL');
}

const REASONS: Record<string, string> = {
  ENOENT: 'not found',
  EACCES: 'permission denied',
  ENOEXEC: 'not an executable',
};

function startError(program: string, error: unknown): Error {
  const code = (error as { code?: unknown } | null)?.code;
  const reason = typeof code === 'string' ? REASONS[code] : undefined;
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`cannot run ${program}: ${reason ? `${reason} (${message})` : message}`, { cause: error });
}
