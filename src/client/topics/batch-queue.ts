import type { OutgoingBatch } from './publisher.js';

/**
 * Where closed batches wait to be sent, in order. The CLI's spool keeps them on disk (fsynced before they
 * are sent, so a killed reporter loses none); `MemoryBatchQueue` keeps them in memory.
 */
export interface BatchQueue {
  /**
   * Keeps a batch under the next idempotency key; resolves once it is kept. `mark` is where the batch's
   * input ended (a followed file's position), kept with the batch so a restart reads on from there.
   */
  put(body: Uint8Array, records: number, mark?: InputMark): Promise<OutgoingBatch>;
  /** The oldest batch not yet sent; waits for one; undefined once closed and empty. */
  next(signal?: AbortSignal): Promise<OutgoingBatch | undefined>;
  /** The batch was stored by the server: forget it. */
  remove(batch: OutgoingBatch): Promise<void>;
  /** No more `put`s: `next` answers undefined once the queue is empty. */
  close(): void;
}

/** Where a batch's input ended: a followed file's inode and the byte after its last record. */
export interface InputMark {
  readonly inode: number;
  readonly offset: number;
}

/** A wake-up that every waiter shares, re-armed after each `wake`. */
export class Signal {
  private resolve!: () => void;
  private promise = this.arm();

  private arm(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.resolve = resolve;
    });
  }

  wake(): void {
    this.resolve();
    this.promise = this.arm();
  }

  /** Resolves at the next `wake`, or rejects when `signal` aborts. */
  wait(signal?: AbortSignal): Promise<void> {
    if (!signal) return this.promise;
    signal.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.promise.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
}

/**
 * Batches in memory, for a reporter without `--spool`: bounded by bytes, and `put` waits for room
 * (backpressure on the reader) rather than dropping. Keys are `<deviceId>:<n>` from 0; the caller makes the
 * device id unique per run (a restart must never reuse a key the server remembers).
 */
export class MemoryBatchQueue implements BatchQueue {
  private readonly batches: OutgoingBatch[] = [];
  private bytes = 0;
  private seq = 0;
  private closed = false;
  private readonly changed = new Signal();

  constructor(
    private readonly deviceId: string,
    private readonly maxBytes: number,
  ) {}

  async put(body: Uint8Array, records: number): Promise<OutgoingBatch> {
    // One batch always fits, however large: the bound holds back the second.
    while (this.batches.length > 0 && this.bytes + body.byteLength > this.maxBytes) await this.changed.wait();
    const batch = { key: `${this.deviceId}:${this.seq++}`, body, records };
    this.batches.push(batch);
    this.bytes += body.byteLength;
    this.changed.wake();
    return batch;
  }

  async next(signal?: AbortSignal): Promise<OutgoingBatch | undefined> {
    for (;;) {
      const first = this.batches[0];
      if (first) return first;
      if (this.closed) return undefined;
      await this.changed.wait(signal);
    }
  }

  async remove(batch: OutgoingBatch): Promise<void> {
    const at = this.batches.indexOf(batch);
    if (at === -1) return;
    this.batches.splice(at, 1);
    this.bytes -= batch.body.byteLength;
    this.changed.wake();
  }

  close(): void {
    this.closed = true;
    this.changed.wake();
  }
}
