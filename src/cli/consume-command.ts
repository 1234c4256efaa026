import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { UsageError } from '../client/errors.js';
import { type ConsumedRecord, consume } from '../client/topics/consumer.js';
import { encodeRecords } from '../client/topics/record-framing.js';
import { topicUrl } from '../client/topics/topic-url.js';
import { TOPIC_SEGMENT } from '../protocol/topic-layout.js';
import { type KeyFlags, keyOf } from './format-choice.js';
import { nodeChunkCipher } from './node-chunk-cipher.js';
import { topicRequestOptions } from './topic-request-options.js';
import {
  addConnectionOptions,
  addKeyOptions,
  addRetryOptions,
  durationMs,
  sizeBytes,
} from './transfer-options.js';
import type { TransferIo } from './transfer-outcome.js';

/** The flags of `edgepipe consume`. */
export interface ConsumeFlags extends KeyFlags {
  readonly server?: string;
  readonly token?: string;
  readonly header?: string[];
  readonly retryBase?: string;
  readonly retryCap?: string;
  readonly retryFor?: string;
  readonly group: string;
  readonly consumer?: string;
  readonly exec?: string;
  readonly execTimeout?: string;
  readonly count?: string;
  readonly wait?: string;
  readonly start?: string;
  readonly once?: boolean;
  readonly binary?: boolean;
  readonly maxAnswer?: string;
  readonly quiet?: boolean;
}

/** Adds `edgepipe consume` to `program`. */
export function addConsumeCommand(program: Command, io: TransferIo): void {
  const command = program
    .command('consume')
    .description(
      'read a topic (or every topic below a prefix) as a consumer group; print records or run a command per batch',
    )
    .argument('<topic>', 'a topic name on --server, <prefix>/* for a namespace, or a full URL')
    .requiredOption('--group <name>', 'the consumer group (created on first use)')
    .option('--consumer <name>', "this consumer's name in the group (default: the host name)")
    .option(
      '--exec <command>',
      'run this shell command per batch, records on its stdin; ack only if it exits 0',
    )
    .option(
      '--exec-timeout <duration>',
      'kill a --exec command running this long; its batch is not acked (10m)',
    )
    .option('--count <n>', 'records per read (and per --exec batch), 1 to 1000 (1000)')
    .option('--wait <duration>', 'long-poll: how long a read waits for a first record (20s)')
    .option('--start <where>', 'where a new group starts: earliest or latest (earliest)')
    .option('--once', 'exit 0 once a read finds no record (drain what is there)')
    .option('--binary', 'records out length-prefixed (4-byte big-endian length), not one per line')
    .option('--max-answer <size>', 'bytes of one read answer at most (64MiB)')
    .option('-q, --quiet', 'no notices (errors still go to stderr)');
  addKeyOptions(addRetryOptions(addConnectionOptions(command), '0')).action(
    async (topic: string, flags: ConsumeFlags) => {
      await io.run(() => runConsume(topic, flags, io));
    },
  );
}

async function runConsume(topic: string, flags: ConsumeFlags, io: TransferIo): Promise<void> {
  const url = topicUrl(topic, flags.server);
  const consumer =
    flags.consumer ??
    hostname()
      .replace(/[^A-Za-z0-9._~-]/g, '-')
      .slice(0, 64);
  for (const [flag, value] of [
    ['--group', flags.group],
    ['--consumer', consumer],
  ] as const) {
    if (!TOPIC_SEGMENT.test(value)) throw new UsageError(`${flag} should be 1 to 64 of A-Z a-z 0-9 . _ ~ -`);
  }
  // The most a read may hand out: a consumer draining a backlog makes a tenth of the round trips it would
  // at the protocol's default of 100 (measured: 20,000 records of 20 topics in 1.3 s against 2.2 s at 100,
  // process start included, on one Redis).
  const count = Number(flags.count ?? 1000);
  if (!Number.isInteger(count) || count < 1 || count > 1000)
    throw new UsageError('--count should be 1 to 1000');
  const start = flags.start ?? 'earliest';
  if (start !== 'earliest' && start !== 'latest')
    throw new UsageError('--start should be earliest or latest');
  const execTimeoutMs = durationMs(flags.execTimeout, 10 * 60_000, '--exec-timeout');
  const key = await keyOf(flags, io, false);
  const signal = io.interruptSignal();
  const notice = (text: string) => {
    if (!flags.quiet) io.stderr(`edgepipe: ${text}\n`);
  };
  const binary = flags.binary === true;
  // A closed stdout fails the write (see `print`); without a listener the stream's error would crash.
  io.stdout.on('error', () => {});
  await consume({
    url,
    group: flags.group,
    consumer,
    count,
    waitMs: durationMs(flags.wait, 20_000, '--wait'),
    start,
    ...(key ? { key, cipher: nodeChunkCipher } : {}),
    maxAnswerBytes: sizeBytes(flags.maxAnswer, 64 * 1024 * 1024, '--max-answer'),
    once: flags.once === true,
    handle: flags.exec
      ? (records) => runExec(flags.exec!, records, binary, execTimeoutMs, notice)
      : (records) => print(io.stdout, records, binary),
    ...topicRequestOptions(flags, signal, notice),
  });
}

/** The records as bytes: one per line, or length-prefixed. */
function bytesOf(records: readonly ConsumedRecord[], binary: boolean): Uint8Array {
  if (binary) return encodeRecords(records.map((r) => r.data));
  const newline = new Uint8Array([0x0a]);
  return Buffer.concat(records.flatMap((r) => [r.data, newline]));
}

/**
 * Writes the records to stdout and waits until it takes them (a slow reader slows the reads). A reader
 * that went away (`| head`) ends the command as an interruption; the records stay unacknowledged.
 */
async function print(out: Writable, records: readonly ConsumedRecord[], binary: boolean): Promise<boolean> {
  await new Promise<void>((resolve, reject) => {
    out.write(bytesOf(records, binary), (error) =>
      error
        ? reject(Object.assign(new Error('stdout closed'), { name: 'Interrupted', cause: error }))
        : resolve(),
    );
  });
  return true;
}

/**
 * Runs `command` (a shell line) with the records on its stdin; true when it exits 0 within the timeout.
 * Its stdout and stderr are this process's.
 */
function runExec(
  command: string,
  records: readonly ConsumedRecord[],
  binary: boolean,
  timeoutMs: number,
  notice: (text: string) => void,
): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const child = spawn('sh', ['-c', command], {
      stdio: ['pipe', 'inherit', 'inherit'],
      env: { ...process.env, EDGEPIPE_RECORDS: String(records.length) },
    });
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            notice(`--exec ran ${Math.round(timeoutMs / 1000)} s: killed; the batch stays pending`);
            child.kill('SIGKILL');
          }, timeoutMs)
        : undefined;
    child.on('error', (error) => {
      clearTimeout(timer);
      notice(`--exec could not start: ${error.message}`);
      resolve(false);
    });
    child.on('close', (code, killedBy) => {
      clearTimeout(timer);
      if (code !== 0) notice(`--exec ended with ${killedBy ?? `exit ${code}`}; the batch stays pending`);
      resolve(code === 0);
    });
    // A command that does not read all of its stdin is its own business: its exit status decides.
    child.stdin.on('error', () => {});
    child.stdin.end(bytesOf(records, binary));
  });
}
