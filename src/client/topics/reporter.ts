import type { Clock } from '../../clock.js';
import { RefusedError } from '../errors.js';
import type { BatchQueue, InputMark } from './batch-queue.js';
import type { BatchSealer } from './batch-seal.js';
import { RecordBatcher } from './batcher.js';
import { publishBatch, type TopicRequestOptions } from './publisher.js';
import { encodeRecords } from './record-framing.js';

/** Everything `report` needs; the CLI builds it. */
export interface ReportOptions extends TopicRequestOptions {
  /** The topic's URL (`POST` appends). */
  readonly url: URL;
  /** The records, in order; the report ends when they end and every batch is stored. */
  readonly records: AsyncIterable<Uint8Array>;
  readonly queue: BatchQueue;
  readonly batchBytes: number;
  readonly batchMs: number;
  /** The batcher's timers. */
  readonly timers: Clock;
  readonly gzip: boolean;
  /** Seals each batch into one record (`--passphrase`, `--key-file`). */
  readonly sealer?: BatchSealer;
  /** Where the input of a batch ended (its last record's mark; see `BatchQueue.put`). */
  readonly markOf?: (records: readonly Uint8Array[]) => InputMark | undefined;
}

/** How a report ended. */
export interface ReportResult {
  readonly batches: number;
  readonly records: number;
  /** Batches the server refused for good (too large, malformed): dropped with a notice, not retried. */
  readonly refused: number;
}

/** How long an interrupted report may take to queue what it had read. */
const FLUSH_ON_STOP_MS = 2000;

/** Statuses that refuse a batch itself (its size, its framing), not the reporter: skip it and go on. */
const BATCH_REFUSALS = new Set([400, 413, 422]);

/**
 * Reads records into batches, keeps each batch in the queue (the spool) before it is sent, and sends them
 * one at a time in order, each until the server has it. Batches left in the queue by an earlier run go
 * first. Ends when the records end and the queue is empty.
 * @throws RefusedError when the server refuses the reporter (401, 403, 404, ...), GaveUpError
 */
export async function report(options: ReportOptions): Promise<ReportResult> {
  const { queue } = options;
  let batches = 0;
  let records = 0;
  let refused = 0;
  // Batches of this run queued and not yet stored by the server.
  let unsent = 0;
  const batcher = new RecordBatcher({
    maxBytes: options.batchBytes,
    maxMs: options.batchMs,
    clock: options.timers,
    onBatch: async (batch) => {
      const body = options.sealer ? encodeRecords([await options.sealer.seal(batch)]) : encodeRecords(batch);
      await queue.put(body, batch.length, options.markOf?.(batch));
      unsent += 1;
    },
    senderBusy: () => unsent > 0,
  });
  // The sender stops the reader when it fails for good, so neither waits on the other forever.
  const stop = new AbortController();
  const reading = (async () => {
    try {
      for await (const record of options.records) {
        stop.signal.throwIfAborted();
        await batcher.add(record);
      }
      await batcher.flush();
      options.onEvent?.({ type: 'notice', text: 'the input ended; every record is queued to send' });
    } finally {
      queue.close();
    }
  })();
  const sending = (async () => {
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    for (;;) {
      const batch = await queue.next(signal);
      if (!batch) return;
      try {
        await publishBatch({ ...options, signal }, options.url, batch, options.gzip);
        batches += 1;
        records += batch.records;
      } catch (error) {
        if (!(error instanceof RefusedError && BATCH_REFUSALS.has(error.status))) throw error;
        refused += 1;
        options.onEvent?.({ type: 'notice', text: `dropped batch ${batch.key}: ${error.message}` });
      }
      await queue.remove(batch);
      unsent = Math.max(0, unsent - 1);
    }
  })();
  sending.catch((error: unknown) => stop.abort(error));
  reading.catch((error: unknown) => stop.abort(error));
  // Interrupted (SIGTERM): what was read is queued before the report ends, so with a spool a stopped
  // reporter keeps every record it took from its input. Bounded: a full in-memory queue never frees now.
  let kept: Promise<void> | undefined;
  const keep = () => {
    const timer = new AbortController();
    kept = Promise.race([
      batcher.flush().catch(() => {}),
      options.clock.sleep(FLUSH_ON_STOP_MS, timer.signal).catch(() => {}),
    ]).finally(() => timer.abort());
  };
  options.signal?.addEventListener('abort', keep, { once: true });
  try {
    await Promise.all([reading, sending]);
  } catch (error) {
    await kept;
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', keep);
  }
  return { batches, records, refused };
}
