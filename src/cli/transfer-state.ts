import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where a client keeps what a run killed mid-transfer (SIGKILL, a reboot) needs to continue when it is run
 * again with the same arguments: `EDGEPIPE_STATE_DIR`, else `$XDG_STATE_HOME/edgepipe`, else
 * `~/.local/state/edgepipe`. One small JSON file per transfer, named after its direction and URL.
 */
export function stateDir(env: Record<string, string | undefined>): string {
  if (env.EDGEPIPE_STATE_DIR) return env.EDGEPIPE_STATE_DIR;
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'edgepipe');
}

/** One transfer's saved state (its shape is the command's own). */
export class TransferState<T extends object> {
  private readonly file: string;

  constructor(dir: string, direction: 'send' | 'recv', url: URL) {
    const key = createHash('sha256').update(`${direction} ${url.href}`).digest('hex').slice(0, 32);
    this.file = join(dir, `${direction}-${key}.json`);
  }

  load(): T | undefined {
    try {
      return JSON.parse(readFileSync(this.file, 'utf8')) as T;
    } catch {
      return undefined;
    }
  }

  /** Written whole through a rename, so a kill mid-write leaves the old state or the new, never half. */
  save(state: T): void {
    mkdirSync(join(this.file, '..'), { recursive: true, mode: 0o700 });
    const temporary = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(state), { mode: 0o600 });
    renameSync(temporary, this.file);
  }

  clear(): void {
    rmSync(this.file, { force: true });
  }
}
