import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { UsageError } from '../client/errors.js';
import { type InputMark, MemoryBatchQueue } from '../client/topics/batch-queue.js';
import { BatchSealer } from '../client/topics/batch-seal.js';
import { FramingError, LineDecoder, RecordDecoder } from '../client/topics/record-framing.js';
import { report } from '../client/topics/reporter.js';
import { topicUrl } from '../client/topics/topic-url.js';
import { systemClock as systemTimers } from '../clock.js';
import { followFile } from './follow-file.js';
import { type KeyFlags, keyOf } from './format-choice.js';
import { nodeChunkCipher } from './node-chunk-cipher.js';
import { ReportSpool } from './report-spool.js';
import { topicRequestOptions } from './topic-request-options.js';
import {
  addConnectionOptions,
  addKeyOptions,
  addRetryOptions,
  durationMs,
  sizeBytes,
} from './transfer-options.js';
import type { TransferIo } from './transfer-outcome.js';

/** The flags of `edgepipe report`. */
export interface ReportFlags extends KeyFlags {
  readonly server?: string;
  readonly token?: string;
  readonly header?: string[];
  readonly retryBase?: string;
  readonly retryCap?: string;
  readonly retryFor?: string;
  readonly batchBytes?: string;
  readonly batchMs?: string;
  readonly binary?: boolean;
  readonly follow?: string;
  readonly spool?: string;
  readonly spoolMax?: string;
  readonly device?: string;
  readonly gzip: boolean;
  readonly maxRecord?: string;
  readonly quiet?: boolean;
}

const DEFAULT_BATCH_BYTES = 256 * 1024;
/**
 * A sealed batch is one record, and the server's default `topics.maxRecordBytes` is 64 KiB: the default
 * batch leaves room for the sealing's header, tags and end marker.
 */
const DEFAULT_SEALED_BATCH_BYTES = 48 * 1024;
const DEFAULT_BATCH_MS = 1000;
const DEFAULT_SPOOL_BYTES = 64 * 1024 * 1024;
/** The server's default `topics.maxRecordBytes`. */
const DEFAULT_MAX_RECORD = 64 * 1024;
const DEVICE_ID = /^[A-Za-z0-9._~-]{1,64}$/;

/** Adds `edgepipe report` to `program`. */
export function addReportCommand(program: Command, io: TransferIo): void {
  const command = program
    .command('report')
    .description(
      'append records from stdin or a followed file to a topic, in batches; retries, spools offline, can encrypt',
    )
    .argument('<topic>', 'the topic: a name on --server (fleet/device-17) or a full URL');
  addConnectionOptions(command)
    .option('--batch-bytes <size>', 'close a batch before it passes this size (256KiB; sealed: 48KiB)')
    .option('--batch-ms <duration>', 'close a batch this long after its first record (1000; ms, or 2s)')
    .option('--binary', 'records are length-prefixed (4-byte big-endian length), not lines')
    .option('--follow <file>', 'read records appended to this file (tail -F), not stdin')
    .option('--spool <dir>', 'keep each batch on disk until the broker has it (survives restarts)')
    .option(
      '--spool-max <size>',
      'bytes the spool (or, without one, memory) holds; past it the oldest batch is dropped (64MiB)',
    )
    .option('--device <id>', "this device's id in idempotency keys (default: the spool's, else random)")
    .option('--no-gzip', 'send batches uncompressed')
    .option(
      '--max-record <size>',
      'longest record; longer lines are skipped with a warning (64KiB, the server default)',
    )
    .option('-q, --quiet', 'no notices (errors still go to stderr)');
  addKeyOptions(addRetryOptions(command, '0')).action(async (topic: string, flags: ReportFlags) => {
    await io.run(() => runReport(topic, flags, io));
  });
}

async function runReport(topic: string, flags: ReportFlags, io: TransferIo): Promise<void> {
  const url = topicUrl(topic, flags.server);
  if (url.pathname.endsWith('/*')) throw new UsageError('report appends to one topic, not a namespace');
  const sealed = Boolean(flags.passphrase || flags.keyFile);
  const batchBytes = sizeBytes(
    flags.batchBytes,
    sealed ? DEFAULT_SEALED_BATCH_BYTES : DEFAULT_BATCH_BYTES,
    '--batch-bytes',
  );
  const batchMs = /^\d+$/.test(flags.batchMs ?? '')
    ? Number(flags.batchMs)
    : durationMs(flags.batchMs, DEFAULT_BATCH_MS, '--batch-ms');
  const spoolMax = sizeBytes(flags.spoolMax, DEFAULT_SPOOL_BYTES, '--spool-max');
  const maxRecord = sizeBytes(flags.maxRecord, DEFAULT_MAX_RECORD, '--max-record');
  if (batchBytes < 1) throw new UsageError('--batch-bytes should be at least 1 byte');
  if (spoolMax < 2 * batchBytes)
    throw new UsageError('--spool-max should hold at least two batches (2 × --batch-bytes)');
  if (flags.device !== undefined && !DEVICE_ID.test(flags.device)) {
    throw new UsageError('--device should be 1 to 64 of A-Z a-z 0-9 . _ ~ -');
  }
  const key = await keyOf(flags, io, true);
  const warn = (text: string) => io.stderr(`${text}\n`);
  const notice = (text: string) => {
    if (!flags.quiet) warn(`edgepipe: ${text}`);
  };
  const spool = flags.spool
    ? ReportSpool.open({
        dir: flags.spool,
        maxBytes: spoolMax,
        ...(flags.device ? { device: flags.device } : {}),
        newDeviceId: () => randomBytes(8).toString('hex'),
        warn,
        pid: process.pid,
      })
    : undefined;
  if (spool && spool.waiting > 0) notice(`${spool.waiting} batches left in the spool go first`);
  // Without a spool nothing remembers the sequence: a run id keeps a restart's keys new.
  const queue =
    spool ?? new MemoryBatchQueue(`${flags.device ?? 'run'}.${randomBytes(6).toString('hex')}`, spoolMax);
  const signal = io.interruptSignal();
  const onTooLong = (bytes: number) =>
    warn(`edgepipe: skipped a record of ${bytes}+ bytes (over --max-record ${maxRecord})`);
  // With --follow and --spool, each batch keeps where its input ended (a line's end in the file), so a
  // restarted reporter reads on from there: nothing appended while it was down is missed, nothing sent twice.
  const marks = new WeakMap<Uint8Array, InputMark>();
  const resumable = Boolean(flags.follow && spool && !flags.binary);
  const pieces: AsyncIterable<Piece> = flags.follow
    ? followFile(flags.follow, { signal, ...(resumable && spool?.mark ? { from: spool.mark } : {}) })
    : stdinPieces(io.stdin);
  try {
    const result = await report({
      url,
      records: recordsOf(pieces, flags.binary === true, maxRecord, onTooLong, resumable ? marks : undefined),
      markOf: (records) => marks.get(records.at(-1)!),
      queue,
      batchBytes,
      batchMs,
      timers: systemTimers,
      gzip: flags.gzip,
      ...(key ? { sealer: new BatchSealer(key, { cipher: nodeChunkCipher }) } : {}),
      ...topicRequestOptions(flags, signal, notice),
    });
    notice(
      `reported ${result.records} records in ${result.batches} batches` +
        (result.refused ? `; ${result.refused} batches refused and dropped` : '') +
        (spool?.dropped ? `; ${spool.dropped} batches dropped from a full spool` : ''),
    );
  } finally {
    spool?.release();
  }
}

/** Input bytes; a followed file's say where they were. */
type Piece = { readonly bytes: Uint8Array; readonly inode?: number; readonly offset?: number };

async function* stdinPieces(stdin: Readable): AsyncGenerator<Piece> {
  for await (const bytes of stdin as Readable & AsyncIterable<Uint8Array>) yield { bytes };
}

/**
 * Records cut from pieces: lines, or length-prefixed with `--binary`. With `marks`, each line of a
 * followed file is marked with the offset after its `\n` (where a restart reads on).
 */
async function* recordsOf(
  pieces: AsyncIterable<Piece>,
  binary: boolean,
  maxRecord: number,
  onTooLong: (bytes: number) => void,
  marks?: WeakMap<Uint8Array, InputMark>,
): AsyncGenerator<Uint8Array> {
  if (binary) {
    const decoder = new RecordDecoder(maxRecord);
    try {
      for await (const piece of pieces) yield* decoder.push(piece.bytes);
      decoder.end();
    } catch (error) {
      if (error instanceof FramingError) throw new UsageError(`--binary input: ${error.message}`);
      throw error;
    }
    return;
  }
  const lines = new LineDecoder(maxRecord, onTooLong);
  for await (const { bytes, inode, offset } of pieces) {
    if (!marks || inode === undefined || offset === undefined) {
      yield* lines.push(bytes);
      continue;
    }
    // Line by line, so each record is marked with the file offset after its own `\n`.
    let start = 0;
    while (start < bytes.byteLength) {
      const newline = bytes.indexOf(0x0a, start);
      const end = newline === -1 ? bytes.byteLength : newline + 1;
      for (const record of lines.push(bytes.subarray(start, end))) {
        marks.set(record, { inode, offset: offset + end });
        yield record;
      }
      start = end;
    }
  }
  yield* lines.end();
}
