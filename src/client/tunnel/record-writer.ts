import type { TransferClock } from '../transfer-events.js';
import { isLast, LENGTH_BYTES, MAX_PAYLOAD, RecordType } from './tunnel-records.js';
import type { StreamStart } from './tunnel-stream-header.js';

/** Queued pieces smaller than this together leave as one chunk (one copy saves a trip through every stage). */
const JOIN_BELOW_BYTES = 16 * 1024;

/**
 * One direction's outgoing stream: the header, then records, in order (a sealed record's counter is its
 * place). Writes queue one after another and wait while `highWaterBytes` are queued, so a fast socket is
 * read no faster than the broker takes its bytes. What queued up between two reads of the pipe leaves as
 * one chunk when it is small (keystrokes, heartbeats, a request and its reply): each chunk costs its way
 * through the replay buffer, the request body and a write to the socket, whatever its size.
 */
export class RecordWriter {
  /** The stream's wire bytes, for the pipe's PUT. */
  readonly readable: ReadableStream<Uint8Array>;
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private closed = false;
  private failure: unknown;
  /** Wakes the reader waiting for bytes, and the writers waiting for room. */
  private wakeReader: (() => void) | undefined;
  private wakeWriters: Array<() => void> = [];
  private chain: Promise<void> = Promise.resolve();
  private counter = 0;
  private pending = 0;
  private ended = false;
  /** When a record was last queued (heartbeats fill silences). */
  lastWriteAt: number;

  constructor(
    private readonly start: StreamStart,
    private readonly highWaterBytes: number,
    private readonly clock: TransferClock,
  ) {
    this.lastWriteAt = clock.now();
    this.push(start.header);
    this.readable = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          while (this.queue.length === 0 && !this.closed && this.failure === undefined) {
            await new Promise<void>((resolve) => {
              this.wakeReader = resolve;
            });
          }
          if (this.queue.length > 0) {
            controller.enqueue(this.take());
            return;
          }
          if (this.failure !== undefined) controller.error(this.failure);
          else controller.close();
        },
        cancel: (reason) => this.abandon(reason),
      },
      { highWaterMark: 0 },
    );
  }

  /** Whether a write waits or runs (a heartbeat then adds nothing). */
  get busy(): boolean {
    return this.pending > 0;
  }

  /** Whether the last record (FIN or RST) was queued. */
  get done(): boolean {
    return this.ended;
  }

  /**
   * Queues a record (a DATA payload above MAX_PAYLOAD goes as several). Resolves once it is in the
   * stream's queue. After FIN or RST nothing more is written.
   */
  write(type: RecordType, payload?: Uint8Array): Promise<void> {
    this.pending += 1;
    const run = this.chain.then(async () => {
      try {
        if (this.ended) return;
        if (type === RecordType.data && payload && payload.byteLength > MAX_PAYLOAD) {
          for (let at = 0; at < payload.byteLength; at += MAX_PAYLOAD) {
            await this.emit(type, payload.subarray(at, at + MAX_PAYLOAD));
          }
        } else {
          await this.emit(type, payload);
        }
      } finally {
        this.pending -= 1;
      }
    });
    this.chain = run.catch(() => {});
    return run;
  }

  /** Ends the stream without a last record (the connection is abandoned, the pipe aborted anyway). */
  abandon(reason: unknown): void {
    this.ended = true;
    this.failure ??= reason ?? new Error('abandoned');
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.wake();
  }

  private async emit(type: RecordType, payload: Uint8Array | undefined): Promise<void> {
    const size = payload?.byteLength ?? 0;
    const last = isLast(type);
    const cipher = this.start.cipher;
    while (this.queuedBytes >= this.highWaterBytes && this.failure === undefined) {
      await new Promise<void>((resolve) => this.wakeWriters.push(resolve));
    }
    if (this.failure !== undefined) return;
    this.lastWriteAt = this.clock.now();
    if (cipher) {
      const body = new Uint8Array(1 + size);
      body[0] = type;
      if (payload) body.set(payload, 1);
      const sealed = await cipher.seal(this.counter++, last, body);
      const record = new Uint8Array(LENGTH_BYTES + sealed.byteLength);
      new DataView(record.buffer).setUint32(0, sealed.byteLength);
      record.set(sealed, LENGTH_BYTES);
      this.push(record);
    } else if (size >= JOIN_BELOW_BYTES) {
      // A large payload is not copied: its prefix and itself are queued as they are (the socket's buffers
      // are never reused, so nothing changes under them).
      const prefix = new Uint8Array(LENGTH_BYTES + 1);
      new DataView(prefix.buffer).setUint32(0, 1 + size);
      prefix[LENGTH_BYTES] = type;
      this.push(prefix);
      this.push(payload!);
    } else {
      const record = new Uint8Array(LENGTH_BYTES + 1 + size);
      new DataView(record.buffer).setUint32(0, 1 + size);
      record[LENGTH_BYTES] = type;
      if (payload) record.set(payload, LENGTH_BYTES + 1);
      this.push(record);
    }
    if (last) {
      this.ended = true;
      this.closed = true;
      this.wake();
    }
  }

  private push(piece: Uint8Array): void {
    this.queue.push(piece);
    this.queuedBytes += piece.byteLength;
    this.wakeReader?.();
    this.wakeReader = undefined;
  }

  /** The next chunk for the pipe: the first piece, joined with the small ones after it. */
  private take(): Uint8Array {
    let count = 1;
    let bytes = this.queue[0]!.byteLength;
    while (
      count < this.queue.length &&
      bytes + this.queue[count]!.byteLength <= JOIN_BELOW_BYTES &&
      bytes < JOIN_BELOW_BYTES
    ) {
      bytes += this.queue[count]!.byteLength;
      count += 1;
    }
    let chunk: Uint8Array;
    if (count === 1) {
      chunk = this.queue.shift()!;
    } else {
      chunk = new Uint8Array(bytes);
      let at = 0;
      for (const piece of this.queue.splice(0, count)) {
        chunk.set(piece, at);
        at += piece.byteLength;
      }
    }
    this.queuedBytes -= chunk.byteLength;
    this.wake();
    return chunk;
  }

  private wake(): void {
    this.wakeReader?.();
    this.wakeReader = undefined;
    if (this.queuedBytes < this.highWaterBytes || this.failure !== undefined) {
      for (const resolve of this.wakeWriters.splice(0)) resolve();
    }
  }
}
