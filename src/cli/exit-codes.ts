// The exit codes of `edgepipe` and of the Bun and Deno entries, in one place (README, "Exit codes", lists
// them). A script or a supervisor tells a bad configuration (don't restart) from an unreachable dependency
// (restart later) by the code alone; the one line on stderr says what to do about it.

import { ListenError } from '../adapter/node/listen-error.js';
import { BrokerUnavailableError } from '../broker/errors.js';
import { ConfigError } from '../config.js';

/** Every way the process ends, by exit code. */
export const ExitCode = {
  /** Served and stopped after draining (SIGTERM, SIGINT), or a command (`sign`) did its job. */
  ok: 0,
  /** An unexpected error: a bug. The stack trace is printed. */
  internal: 1,
  /** A bad flag, argument, config file or config value; the line names it. */
  usage: 2,
  /** The server could not listen: the port is taken, needs privileges, or the address is not this host's. */
  listen: 3,
  /** The Redis the config names could not be reached at start (refused, unknown host, timed out, auth). */
  broker: 4,
} as const;

/** The code a second signal exits with, as a shell reports a process that the signal killed. */
export const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * What a failure prints (one line, or the stack of a bug) and the code it exits with: a failure to start
 * `serve`, or a command that could not do its job.
 */
export function exitFor(error: unknown): { readonly line: string; readonly code: number } {
  if (error instanceof ConfigError) return { line: `edgepipe: ${error.message}`, code: ExitCode.usage };
  if (error instanceof ListenError) return { line: `edgepipe: ${error.message}`, code: ExitCode.listen };
  if (error instanceof BrokerUnavailableError) {
    return { line: `edgepipe: ${error.message}`, code: ExitCode.broker };
  }
  const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { line: stack, code: ExitCode.internal };
}
