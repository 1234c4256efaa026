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
  /**
   * True while the sender still has batches to send. A batch that comes of age then keeps gathering (up to
   * `maxBytes`, or `HOLD_MS` after its first record): closed, it would only wait in the queue as one more
   * request. So a reporter whose sends take longer than `maxMs` sends fewer, larger batches instead of
   * falling behind one small request at a time (measured: 20 reporters at 25 records/s each with
   * `--batch-ms 5` on 2 cores fell 10 s behind).
   */
  readonly senderBusy?: () => boolean;
}

/** How long a batch may keep gathering past `maxMs` while the sender is busy (or `maxMs`, if longer). */
export const HOLD_MS = 1000;

/**
 * Gathers records into batches by size (`--batch-bytes`) and age (`--batch-ms`). Batches go out one at a
 * time and in order: `add` resolves once the record is in a batch that has room or has been handed on, so a
 * slow `onBatch` slows the producer instead of piling up batches.
 */
export class RecordBatcher {
  private records: Uint8Array[] = [];
  private bytes = 0;
  /** When the gathering batch's first record came. */
  private firstAt = 0;
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
      this.firstAt = this.options.clock.now();
      this.closeAfter(this.options.maxMs);
    }
  }

  private closeAfter(ms: number): void {
    const { clock, maxMs, senderBusy } = this.options;
    this.cancelTimer = clock.setTimeout(() => {
      this.cancelTimer = undefined;
      const held = clock.now() - this.firstAt;
      if (senderBusy?.() && held < Math.max(maxMs, HOLD_MS)) {
        // Looked at again soon: the batch leaves as soon as the sender is free.
        this.closeAfter(Math.max(1, Math.min(maxMs, 50)));
        return;
      }
      this.flush().catch(() => {});
    }, ms);
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
