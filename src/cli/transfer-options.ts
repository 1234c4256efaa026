import { type Command, Option } from 'commander';
import ms from 'ms';
import type { StreamDigest } from '../client/digest.js';
import { UsageError } from '../client/errors.js';
import { DEFAULT_RETRY, type RetryOptions } from '../client/retry-policy.js';
import { systemClock } from '../client/transfer-events.js';
import type { TransferOptions } from '../client/transfer-options.js';
import { clientFetch } from './client-fetch.js';
import { ProgressView, progressModeOf } from './progress-view.js';
import type { TransferIo } from './transfer-outcome.js';

/** The flags `send` and `recv` share. */
export interface CommonTransferFlags {
  readonly server?: string;
  readonly token?: string;
  readonly n?: string;
  readonly quiet?: boolean;
  readonly progress?: string;
  readonly retryBase?: string;
  readonly retryCap?: string;
  readonly retryFor?: string;
  readonly stallTimeout?: string;
  readonly sha256?: boolean;
  readonly expectSha256?: string;
  readonly passphrase?: boolean;
  readonly keyFile?: string;
  readonly resume: boolean;
  readonly header?: string[];
}

/** Adds the flags `send` and `recv` share to `command`. */
export function addCommonTransferOptions(command: Command): Command {
  addConnectionOptions(command)
    .option('-n <receivers>', 'the number of receivers (?n=)')
    .option('-q, --quiet', 'no progress, no notices (errors still go to stderr)')
    .option('--progress <mode>', 'bar (default on a terminal), json (one object a second) or none');
  addRetryOptions(command, '10m')
    .option(
      '--stall-timeout <duration>',
      'drop and resume a connection idle this long mid-transfer; 0 = never (60s)',
    )
    .option('--sha256', 'print the SHA-256 of the plaintext on stderr when done')
    .option('--expect-sha256 <hex>', 'fail (exit 5) unless the plaintext has this SHA-256');
  return addKeyOptions(command).option(
    '--no-resume',
    'start over instead of continuing what an interrupted run left',
  );
}

/** The flags that name the broker and authenticate (every client command): --server, --token, --header. */
export function addConnectionOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--server <url>', 'the broker, for a <target> given as a path').env('EDGEPIPE_SERVER'),
    )
    .addOption(new Option('--token <token>', 'send Authorization: Bearer <token>').env('EDGEPIPE_TOKEN'))
    .option('--header <line>', "an extra request header, 'Name: value' (repeatable)", collect, []);
}

/** The backoff flags; `budget` is the default of --retry-for as the help shows it. */
export function addRetryOptions(command: Command, budget: string): Command {
  return command
    .option('--retry-base <duration>', 'first backoff step (500ms)')
    .option('--retry-cap <duration>', 'largest backoff step (30s)')
    .option('--retry-for <duration>', `give up after this long without progress; 0 = never (${budget})`);
}

/** The end-to-end encryption flags: --passphrase, --key-file. */
export function addKeyOptions(command: Command): Command {
  return command
    .option(
      '--passphrase',
      'encrypt end to end with a passphrase (EDGEPIPE_PASSPHRASE, else asked on the terminal)',
    )
    .option('--key-file <file>', 'encrypt end to end with a 32-byte key from this file (raw, hex or base64)');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The pipe's URL: `<target>` as a full URL, or a path joined to `--server`; `-n` added as `?n=`. */
export function targetUrl(target: string, server: string | undefined, n: string | undefined): URL {
  let url: URL;
  if (/^https?:\/\//i.test(target)) {
    url = new URL(target);
  } else {
    if (!server) {
      throw new UsageError(
        `'${target}' is a path: give the broker with --server or EDGEPIPE_SERVER, or a full URL`,
      );
    }
    const base = new URL(server);
    url = new URL(`${base.pathname.replace(/\/+$/, '')}/${target.replace(/^\/+/, '')}`, base);
  }
  if (n !== undefined) {
    if (!/^[1-9]\d{0,5}$/.test(n))
      throw new UsageError(`-n should be a whole number of receivers, not '${n}'`);
    const given = url.searchParams.get('n');
    if (given !== null && given !== n) throw new UsageError(`the URL says n=${given} but -n says ${n}`);
    if (given === null) url.searchParams.set('n', n);
  }
  return url;
}

/** A duration flag: milliseconds as a number, or `500ms`, `30s`, `10m`, `1h`. */
export function durationMs(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const parsed = /^\d+$/.test(value) ? Number(value) * 1000 : ms(value as ms.StringValue);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 0) {
    throw new UsageError(`${flag} should be a duration like 500ms, 30s, 10m or 0, not '${value}'`);
  }
  return parsed;
}

/** A size flag: bytes, or with a unit (64MiB, 512KiB, 1GiB; k/M/G as powers of 1024 too). */
export function sizeBytes(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const match = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(value.trim());
  if (!match) throw new UsageError(`${flag} should be a size like 64MiB or 1048576, not '${value}'`);
  const power = { '': 0, k: 1, m: 2, g: 3 }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(match[1]) * 1024 ** power;
}

/** The retry policy from the flags; `budgetMs` is --retry-for's default. */
export function retryOf(
  flags: Pick<CommonTransferFlags, 'retryBase' | 'retryCap' | 'retryFor'>,
  budgetMs = DEFAULT_RETRY.budgetMs,
): RetryOptions {
  return {
    baseMs: durationMs(flags.retryBase, DEFAULT_RETRY.baseMs, '--retry-base'),
    capMs: durationMs(flags.retryCap, DEFAULT_RETRY.capMs, '--retry-cap'),
    budgetMs: durationMs(flags.retryFor, budgetMs, '--retry-for'),
  };
}

/** `--header 'Name: value'` lines as pairs, and the bearer token. */
export function requestHeaders(
  flags: Pick<CommonTransferFlags, 'header' | 'token'>,
): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const line of flags.header ?? []) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header should be 'Name: value', not '${line}'`);
    pairs.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  if (flags.token) pairs.push(['Authorization', `Bearer ${flags.token}`]);
  return pairs;
}

/** `--expect-sha256` must be 64 hex digits. */
export function expectedDigest(flags: CommonTransferFlags): string | undefined {
  const hex = flags.expectSha256;
  if (hex === undefined) return undefined;
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new UsageError('--expect-sha256 should be 64 hex digits');
  return hex.toLowerCase();
}

/**
 * What every transfer takes from the flags (retries, stall timeout, the CLI's fetch and clock, Ctrl-C), and
 * the progress view its events go to.
 */
export function transferBasics(
  flags: CommonTransferFlags,
  io: TransferIo,
  url: URL,
  headers: ReadonlyArray<readonly [string, string]>,
  digest: StreamDigest | undefined,
): { readonly options: TransferOptions; readonly progress: ProgressView } {
  const progress = new ProgressView(
    progressModeOf(flags.progress, flags.quiet === true, io.stderrIsTty),
    { write: (text) => io.stderr(text), now: () => Date.now() },
    flags.quiet !== true,
  );
  const options: TransferOptions = {
    url,
    headers,
    fetch: clientFetch(),
    retry: retryOf(flags),
    stallMs: durationMs(flags.stallTimeout, 60_000, '--stall-timeout'),
    clock: systemClock,
    signal: io.interruptSignal(),
    onEvent: (event) => progress.on(event),
    ...(digest ? { digest } : {}),
  };
  return { options, progress };
}
