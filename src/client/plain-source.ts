import { GaveUpError } from './errors.js';

/**
 * What a sender sends, readable again from an offset: a resumed upload re-reads from where the broker
 * stands. A file opens at the offset; a one-shot stream (stdin) goes through a `ReplayBuffer`.
 */
export interface PlainSource {
  /** Total length when known up front (a file), else undefined (a stream). */
  readonly length: number | undefined;
  /**
   * The bytes from `offset` on. Only one stream is read at a time: the caller cancels the previous one
   * before it asks again.
   * @throws GaveUpError or IntegrityError when the bytes from `offset` can no longer be had.
   */
  from(offset: number): ReadableStream<Uint8Array>;
  /**
   * The bytes from `start` to `end` as a Blob, without reading them (a browser File's `slice`): a body sent
   * whole or in pieces then costs no memory. Only for a source of known length.
   */
  blob?(start: number, end: number): Blob;
}

/**
 * A one-shot stream kept readable from any offset in its last `capacity` bytes. What the broker has not
 * committed yet (the sender's and the server's socket buffers, frames in flight) is at most a few tens of
 * MiB; the buffer must hold at least that, or a resume finds its bytes gone and says so.
 */
export class ReplayBuffer implements PlainSource {
  readonly length = undefined;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  /** Kept chunks, oldest first, and the offset of the first kept byte. */
  private readonly kept: Uint8Array[] = [];
  private keptFrom = 0;
  private keptBytes = 0;
  private ended = false;
  private reading: Promise<void> | undefined;

  constructor(
    input: ReadableStream<Uint8Array>,
    private readonly capacity: number,
  ) {
    this.reader = input.getReader();
  }

  /** The first offset a resume can still start at. */
  get oldestOffset(): number {
    return this.keptFrom;
  }

  from(offset: number): ReadableStream<Uint8Array> {
    if (offset < this.keptFrom) {
      throw new GaveUpError(
        `cannot resume at byte ${offset}: the replay buffer only holds bytes from ${this.keptFrom} on ` +
          `(raise --replay-buffer above ${this.capacity} bytes)`,
      );
    }
    let position = offset;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          for (;;) {
            const held = this.slice(position);
            if (held) {
              position += held.byteLength;
              controller.enqueue(held);
              return;
            }
            if (this.ended) {
              controller.close();
              return;
            }
            await this.readMore();
          }
        },
      },
      { highWaterMark: 0 },
    );
  }

  /**
   * Reads the input's next chunk into the kept bytes. One read at a time, shared: an abandoned attempt's
   * stream (its request may still pull a moment after it failed) and its successor's must not each take a
   * chunk the other one needed.
   */
  private readMore(): Promise<void> {
    this.reading ??= this.reader.read().then(
      ({ done, value }) => {
        this.reading = undefined;
        if (done) this.ended = true;
        else this.keep(value);
      },
      (error: unknown) => {
        this.reading = undefined;
        throw error;
      },
    );
    return this.reading;
  }

  /** The kept bytes from `offset` up to the end of the chunk that holds it; undefined past the kept end. */
  private slice(offset: number): Uint8Array | undefined {
    const keptEnd = this.keptFrom + this.keptBytes;
    if (offset >= keptEnd) return undefined;
    // Walked from the newest chunk back: a reader going on reads the chunk just kept (the usual case, one
    // step), and only a resume reaches further back. From the oldest, each chunk read would cost a pass
    // over the whole buffer (up to thousands of small chunks in 64 MiB).
    let end = keptEnd;
    for (let i = this.kept.length - 1; i >= 0; i--) {
      const chunk = this.kept[i]!;
      const start = end - chunk.byteLength;
      if (offset >= start) return chunk.subarray(offset - start);
      end = start;
    }
    return undefined;
  }

  private keep(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.kept.push(chunk);
    this.keptBytes += chunk.byteLength;
    // The newest chunk stays, whatever the capacity: a reader positioned at it has not had it yet.
    while (this.kept.length > 1 && this.keptBytes - this.kept[0]!.byteLength >= this.capacity) {
      const dropped = this.kept.shift()!;
      this.keptBytes -= dropped.byteLength;
      this.keptFrom += dropped.byteLength;
    }
  }
}
