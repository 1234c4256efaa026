import type { ByteSource } from '../byte-source.js';
import { ERROR_PREFIX, INFO_PREFIX } from '../protocol/transcript-lines.js';

const encoder = new TextEncoder();

/**
 * A message as one line of printable ASCII: other characters (a decoded path or query value a message
 * quotes) become `\u{...}` escapes. The line cannot be split by a CR or LF it quotes, and the body needs no
 * charset: piping-server answers a bare `text/plain`, and its clients compare the type exactly.
 */
export function printableLine(text: string): string {
  return text.replace(/[^\x20-\x7e]/gu, (ch) => `\\u{${ch.codePointAt(0)!.toString(16)}}`);
}

/**
 * The sender's response body: `[INFO] ...` and `[ERROR] ...` lines a curl user reads while the transfer runs.
 * Lines not yet read are queued; a transfer writes a handful (a few per receiver at most, and receivers are
 * capped by `limits.maxReceivers`), so the queue stays small.
 */
export class Transcript implements ByteSource {
  private readonly lines: Uint8Array[] = [];
  private closed = false;
  private cancelled = false;
  private waiter: ((chunk: Uint8Array | null) => void) | undefined;

  info(line: string): void {
    this.write(`${INFO_PREFIX}${printableLine(line)}\n`);
  }

  error(line: string): void {
    this.write(`${ERROR_PREFIX}${printableLine(line)}\n`);
  }

  /** Ends the transcript cleanly once the queued lines are read. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.wake(null);
  }

  read(): Promise<Uint8Array | null> {
    const line = this.lines.shift();
    if (line) return Promise.resolve(line);
    if (this.closed || this.cancelled) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  cancel(): void {
    this.cancelled = true;
    this.lines.length = 0;
    this.wake(null);
  }

  private write(text: string): void {
    if (this.closed || this.cancelled) return;
    const chunk = encoder.encode(text);
    if (this.waiter) this.wake(chunk);
    else this.lines.push(chunk);
  }

  private wake(chunk: Uint8Array | null): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(chunk);
  }
}
