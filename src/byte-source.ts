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
}

/** An empty body. */
export const EMPTY_SOURCE: ByteSource = {
  read: () => Promise.resolve(null),
  cancel: () => {},
};

/** Reads a web ReadableStream as a ByteSource (`null` stream: an empty body). */
export function sourceOfStream(stream: ReadableStream<Uint8Array> | null): ByteSource {
  if (!stream) return EMPTY_SOURCE;
  const reader = stream.getReader();
  return {
    read: () => reader.read().then((result) => (result.done ? null : result.value)),
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
