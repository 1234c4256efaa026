/**
 * A pull-based source of bytes: the one shape a body takes inside edgepipe (a request's upload, a pipe's
 * bytes for a receiver, a sender's transcript). Runtimes meet it at their edges: by default a web
 * ReadableStream is wrapped around it; the Node adapter reads and writes Node's own streams through it, which
 * keeps two web streams and their per-chunk promise machinery off Node's hot path.
 */
export interface ByteSource {
  /** The next chunk, or `null` at a clean end. Rejects when the source failed (truncation is never silent). */
  read(): Promise<Uint8Array | null>;
  /** The consumer stops reading; the source releases what it holds. Idempotent. */
  cancel(reason?: unknown): void;
  /**
   * Settles when the source gives up on a consumer that stopped taking bytes (see `stallGuarded`): the
   * transport cuts the connection, as no read is pending to fail.
   */
  readonly abandoned?: Promise<Error>;
}

/** An empty body. */
export const EMPTY_SOURCE: ByteSource = {
  read: () => Promise.resolve(null),
  cancel: () => {},
};

/** Pieces smaller than this are joined with the ones already queued behind them. */
const JOIN_BELOW_BYTES = 64 * 1024;
/** Microtask turns a queued piece takes to come out of a web stream's reader. */
const QUEUED_WITHIN_TURNS = 8;

/**
 * Reads a web ReadableStream as a ByteSource (`null` stream: an empty body). Small pieces are joined with
 * those already queued behind them (never waited for): Deno hands a chunked upload over as 64 KiB pieces
 * interleaved with pieces of a few bytes, and each piece costs the pipe a write downstream.
 */
export function sourceOfStream(stream: ReadableStream<Uint8Array> | null): ByteSource {
  if (!stream) return EMPTY_SOURCE;
  const reader = stream.getReader();
  let ahead: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  const next = () => {
    const read = ahead ?? reader.read();
    ahead = undefined;
    return read;
  };
  return {
    async read() {
      const first = await next();
      if (first.done) return null;
      let chunk = first.value;
      while (chunk.byteLength < JOIN_BELOW_BYTES) {
        const read = reader.read();
        let result: ReadableStreamReadResult<Uint8Array> | undefined;
        read.then(
          (value) => {
            result = value;
          },
          () => {},
        );
        for (let turn = 0; turn < QUEUED_WITHIN_TURNS && !result; turn++) await Promise.resolve();
        if (!result || result.done) {
          ahead = read;
          break;
        }
        const joined = new Uint8Array(chunk.byteLength + result.value.byteLength);
        joined.set(chunk);
        joined.set(result.value, chunk.byteLength);
        chunk = joined;
      }
      return chunk;
    },
    cancel: (reason) => {
      reader.cancel(reason).catch(() => {});
    },
  };
}

/**
 * A web ReadableStream over a ByteSource that reads nothing ahead of its consumer (the broker's window is the
 * only buffer). A failed source errors the stream, which runtimes turn into a cut connection.
 */
export function streamOfSource(source: ByteSource): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        source.abandoned?.then((error) => controller.error(error));
      },
      pull(controller) {
        return source.read().then(
          (chunk) => (chunk === null ? controller.close() : controller.enqueue(chunk)),
          (error) => controller.error(error),
        );
      },
      cancel(reason) {
        source.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The source without its first `bytes` bytes (a resumed sender re-sends some the broker holds already).
 * Ends early if the source ends before that.
 */
export function skipBytes(source: ByteSource, bytes: number): ByteSource {
  let left = bytes;
  return {
    async read() {
      for (;;) {
        const chunk = await source.read();
        if (chunk === null || left === 0) return chunk;
        if (chunk.byteLength <= left) {
          left -= chunk.byteLength;
          continue;
        }
        const rest = chunk.subarray(left);
        left = 0;
        return rest;
      }
    },
    cancel: (reason) => source.cancel(reason),
  };
}
