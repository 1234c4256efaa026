import type { Clock } from '../../clock.js';
import { RECORD_LENGTH_BYTES } from '../../protocol/topic-layout.js';

/** Options of a `RecordBatcher`. */
export interface BatcherOptions {
  /** A batch is closed before its framed size would pass this (a larger single record goes alone). */
  readonly maxBytes: number;
  /** A batch is closed this long after its first record came, full or not. */
  readonly maxMs: number;
  readonly clock: Clock;
  /** Takes a closed batch; the next batch waits until it resolves (backpressure). */
  readonly onBatch: (records: Uint8Array[]) => Promise<void>;
}

/**
 * Gathers records into batches by size (`--batch-bytes`) and age (`--batch-ms`). Batches go out one at a
 * time and in order: `add` resolves once the record is in a batch that has room or has been handed on, so a
 * slow `onBatch` slows the producer instead of piling up batches.
 */
export class RecordBatcher {
  private records: Uint8Array[] = [];
  private bytes = 0;
  private cancelTimer: (() => void) | undefined;
  /** The batch being handed on; every flush waits for the one before it. */
  private chain: Promise<void> = Promise.resolve();
  private failure: { error: unknown } | undefined;

  constructor(private readonly options: BatcherOptions) {
    if (!(options.maxBytes > 0) || !(options.maxMs >= 0)) throw new RangeError('bad batch bounds');
  }

  /** Adds one record; resolves when there is room for the next. */
  async add(record: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure.error;
    const size = RECORD_LENGTH_BYTES + record.byteLength;
    if (this.records.length > 0 && this.bytes + size > this.options.maxBytes) await this.flush();
    this.records.push(record);
    this.bytes += size;
    if (this.bytes >= this.options.maxBytes) {
      await this.flush();
    } else if (this.records.length === 1 && !this.cancelTimer) {
      this.cancelTimer = this.options.clock.setTimeout(() => {
        this.cancelTimer = undefined;
        this.flush().catch(() => {});
      }, this.options.maxMs);
    }
  }

  /** Hands on what is gathered (at the end of input), and waits for every batch before it. */
  flush(): Promise<void> {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const records = this.records;
    this.records = [];
    this.bytes = 0;
    if (records.length > 0) {
      this.chain = this.chain.then(() =>
        this.options.onBatch(records).catch((error: unknown) => {
          this.failure ??= { error };
          throw error;
        }),
      );
    }
    return this.chain;
  }

  /** Records waiting for their batch to close. */
  get pending(): number {
    return this.records.length;
  }
}
