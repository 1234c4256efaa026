import { ReceiversGoneError, SenderAbortedError } from '../errors.js';

export interface ChunkWindowOptions {
  /** Bytes held between the writer and the slowest reader before `write` makes the writer wait. */
  readonly windowBytes: number;
  /** Chunks held at most, whatever their size: a stream of tiny chunks must not grow the queue unbounded. */
  readonly maxChunks?: number;
  /** Told each chunk's time from `write` to a reader's `read` (ms); `first` for a reader's first chunk. */
  readonly onDelivered?: (ms: number, first: boolean) => void;
}

interface Reader {
  /** Absolute index of the next chunk this reader gets. */
  next: number;
  /** Read to the clean end: leaving now is not an abort. */
  finished: boolean;
  wake?: () => void;
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

/**
 * One writer, a fixed set of readers, each reading every chunk in order. Chunks are shared, not copied; a
 * chunk is dropped once the slowest reader has passed it. `write` resolves at once while the unread backlog
 * of the slowest reader fits the window, and otherwise once half the window is free again, which carries a
 * slow receiver's pace back to the sender.
 */
export class ChunkWindow {
  /**
   * The chunks held are `chunks[head]` onwards. Passed chunks are cleared and skipped rather than spliced
   * out one by one (a splice per chunk read was 1.7 % of a 1 GiB transfer's CPU); the array restarts when
   * it empties and is compacted when its dead head grows past its live part.
   */
  private readonly chunks: (Uint8Array | undefined)[] = [];
  /** When each of `chunks` was written (`performance.now()`), kept only when someone listens. */
  private readonly stamps: number[] = [];
  /** Index in `chunks` (and `stamps`) of the oldest chunk held. */
  private head = 0;
  /** Absolute index of `chunks[head]`. */
  private base = 0;
  private bufferedBytes = 0;
  private readonly readers = new Map<number, Reader>();
  private ended = false;
  private failure: Error | undefined;
  private writer: Waiter | undefined;
  private drained: Waiter | undefined;
  private readonly maxChunks: number;

  constructor(
    readerIds: Iterable<number>,
    private readonly options: ChunkWindowOptions,
  ) {
    this.maxChunks = options.maxChunks ?? 4096;
    for (const id of readerIds) this.readers.set(id, { next: 0, finished: false });
  }

  /** Readers that have not left (reading, or read to the end). */
  get readerCount(): number {
    return this.readers.size;
  }

  /** Chunks held right now. */
  private get chunkCount(): number {
    return this.chunks.length - this.head;
  }

  /** Bytes held right now (the slowest reader's backlog). */
  get heldBytes(): number {
    return this.bufferedBytes;
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.readers.size === 0) return Promise.reject(new ReceiversGoneError());
    if (this.ended) return Promise.reject(new Error('write after end'));
    if (chunk.byteLength === 0) return Promise.resolve();
    this.chunks.push(chunk);
    if (this.options.onDelivered) this.stamps.push(performance.now());
    this.bufferedBytes += chunk.byteLength;
    for (const reader of this.readers.values()) this.wakeReader(reader);
    if (this.hasRoom()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.writer = { resolve, reject };
    });
  }

  /** Marks the end of the data; resolves when every remaining reader has read all of it. */
  end(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.readers.size === 0) return Promise.reject(new ReceiversGoneError());
    this.ended = true;
    for (const reader of this.readers.values()) this.wakeReader(reader);
    if (this.allDrained()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.drained = { resolve, reject };
    });
  }

  /** Fails every reader and the writer with `error`. */
  fail(error: Error): void {
    if (this.failure || (this.ended && this.allDrained())) return;
    this.failure = error;
    this.chunks.length = 0;
    this.stamps.length = 0;
    this.head = 0;
    this.bufferedBytes = 0;
    for (const reader of this.readers.values()) this.wakeReader(reader);
    this.writer?.reject(error);
    this.writer = undefined;
    this.drained?.reject(error);
    this.drained = undefined;
  }

  /**
   * The next chunk for `readerId`, `null` at a clean end; rejects when the writer failed. Not `async`: a chunk
   * that is already there costs one settled promise, not a chain of them (this is the per-chunk hot path).
   */
  read(readerId: number): Promise<Uint8Array | null> {
    const reader = this.readers.get(readerId);
    if (!reader || reader.finished)
      return Promise.reject(new SenderAbortedError('This receiver has left the pipe.'));
    if (this.failure) {
      return Promise.reject(
        this.failure instanceof SenderAbortedError ? this.failure : new SenderAbortedError(),
      );
    }
    const offset = reader.next - this.base;
    if (offset < this.chunkCount) {
      const chunk = this.chunks[this.head + offset]!;
      if (this.options.onDelivered) {
        this.options.onDelivered(performance.now() - this.stamps[this.head + offset]!, reader.next === 0);
      }
      reader.next += 1;
      if (offset === 0) this.trim();
      return Promise.resolve(chunk);
    }
    if (this.ended) {
      reader.finished = true;
      this.settleDrained();
      return Promise.resolve(null);
    }
    return new Promise<void>((resolve) => {
      reader.wake = resolve;
    }).then(() => this.read(readerId));
  }

  /**
   * A reader left: it no longer holds chunks back. Returns whether that was an abort (it left before the
   * clean end); a reader that finished stays counted as served.
   */
  removeReader(readerId: number): boolean {
    const reader = this.readers.get(readerId);
    if (!reader || reader.finished) return false;
    this.readers.delete(readerId);
    this.trim();
    if (this.readers.size === 0 && !this.ended) {
      const gone = new ReceiversGoneError();
      this.writer?.reject(gone);
      this.writer = undefined;
    }
    this.settleDrained();
    return true;
  }

  private wakeReader(reader: Reader): void {
    const wake = reader.wake;
    if (wake) {
      reader.wake = undefined;
      wake();
    }
  }

  private hasRoom(): boolean {
    return this.bufferedBytes <= this.options.windowBytes && this.chunkCount <= this.maxChunks;
  }

  /**
   * A writer that had to wait goes on once half the window is free, not as soon as one chunk was read: it
   * then writes a run of chunks instead of one per chunk read, and the upload's socket stops and starts
   * that much less often. 512 MiB through one pipe, 3 interleaved rounds: 741 → 788 MiB/s, 1.38 → 1.30 s
   * of CPU per GiB (docs/benchmarks.md).
   */
  private hasRoomToResume(): boolean {
    return this.bufferedBytes <= this.options.windowBytes / 2 && this.chunkCount <= this.maxChunks / 2;
  }

  /** Drops the chunks every reader has passed and lets a waiting writer go on once half the window is free. */
  private trim(): void {
    let slowest = this.base + this.chunkCount;
    for (const reader of this.readers.values()) if (reader.next < slowest) slowest = reader.next;
    const drop = slowest - this.base;
    if (drop <= 0) return;
    for (let i = this.head; i < this.head + drop; i++) {
      this.bufferedBytes -= this.chunks[i]!.byteLength;
      this.chunks[i] = undefined;
    }
    this.head += drop;
    this.base = slowest;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.stamps.length = 0;
      this.head = 0;
    } else if (this.head > this.chunkCount) {
      this.chunks.splice(0, this.head);
      if (this.stamps.length > 0) this.stamps.splice(0, this.head);
      this.head = 0;
    }
    if (this.writer && this.hasRoomToResume()) {
      const writer = this.writer;
      this.writer = undefined;
      writer.resolve();
    }
  }

  private allDrained(): boolean {
    const end = this.base + this.chunkCount;
    for (const reader of this.readers.values()) if (reader.next < end) return false;
    return true;
  }

  private settleDrained(): void {
    if (!this.ended || !this.drained || !this.allDrained()) return;
    const drained = this.drained;
    this.drained = undefined;
    // Finished readers stay registered, so an empty set means every reader left before the end.
    if (this.readers.size === 0) drained.reject(new ReceiversGoneError());
    else drained.resolve();
  }
}
