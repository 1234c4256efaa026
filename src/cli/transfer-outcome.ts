import type { Readable, Writable } from 'node:stream';
import type { StreamDigest } from '../client/digest.js';
import { IntegrityError, TransferError, type TransferFailure } from '../client/errors.js';
import { SIGNAL_EXIT_CODES } from './exit-codes.js';

/**
 * The exit codes of `edgepipe send` and `edgepipe recv` (docs/client.md, "Exit codes"). Stable: scripts
 * branch on them.
 */
export const TransferExitCode: Record<'ok' | TransferFailure, number> = {
  /** Every byte was delivered (and, with --expect-sha256, matched). */
  ok: 0,
  /** A bad flag or argument. */
  usage: 2,
  /** The server refused (a 4xx other than 408 and 429); its one-line reason is printed. */
  refused: 3,
  /** Network, timeouts, a retry budget spent, or a break the server cannot resume. */
  'gave-up': 4,
  /** The bytes are not what was sent: a cut body, a digest mismatch, a failed decryption, a changed file. */
  integrity: 5,
  /** The other side aborted: every receiver left, or the transfer ended on the server before the end. */
  'peer-aborted': 6,
};

/** What a transfer command reaches of the process: injected, so tests drive it in-process. */
export interface TransferIo {
  readonly env: Record<string, string | undefined>;
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderrIsTty: boolean;
  stderr(text: string): void;
  /** Aborts on SIGINT/SIGTERM (the transfer stops, an interrupted run stays resumable). */
  interruptSignal(): AbortSignal;
  /** Runs a command to its exit code. */
  run(command: () => Promise<void>): Promise<void>;
}

/** The exit code and the line for how a transfer command ended. */
export function transferExit(error: unknown): { readonly code: number; readonly line?: string } {
  if (error === undefined) return { code: TransferExitCode.ok };
  if (error instanceof TransferError)
    return { code: TransferExitCode[error.code], line: `edgepipe: ${error.message}` };
  const { name, signal } = (error ?? {}) as { name?: string; signal?: string };
  if (name === 'AbortError' || name === 'Interrupted') {
    // As a shell reports a process the signal killed: 130 for SIGINT, 143 for SIGTERM.
    const code = signal === 'SIGTERM' ? SIGNAL_EXIT_CODES.SIGTERM : SIGNAL_EXIT_CODES.SIGINT;
    return { code, line: 'edgepipe: interrupted' };
  }
  const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { code: 1, line: stack };
}

/** After the last byte: prints the digest (`--sha256`) and checks it (`--expect-sha256`). */
export function finishTransfer(
  io: TransferIo,
  digest: StreamDigest | undefined,
  expected: string | undefined,
  quiet: boolean,
): void {
  if (!digest) return;
  const hex = digest.hex();
  if (!quiet || expected === undefined) io.stderr(`sha256 ${hex}\n`);
  if (expected !== undefined && hex !== expected) {
    throw new IntegrityError(`SHA-256 mismatch: expected ${expected}, got ${hex}`);
  }
}
