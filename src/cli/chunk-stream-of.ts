import type { Readable } from 'node:stream';

/** What the web side may hold ahead of its reader before the Node readable is paused. */
const READ_AHEAD_BYTES = 1024 * 1024;

/**
 * A Node readable as a web stream of its chunks as they come (no joining, no copy), paused while the
 * stream holds 1 MiB: it ends at the readable's end (a FIN), and errors when the readable errors or closes
 * without an end (a reset, a destroy).
 */
export function chunkStreamOf(input: Readable, closeWithoutEndIsError = true): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        // After the end nothing may error the stream: a web stream closed with chunks still queued can be
        // errored, which throws those chunks away (the socket's 'close' follows its 'end' at once, while a
        // slow reader still has up to the read-ahead to take).
        let ended = false;
        input.on('data', (chunk: Buffer) => {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) input.pause();
        });
        input.once('end', () => {
          ended = true;
          tryTo(() => controller.close());
        });
        input.once('error', (error) => {
          if (!ended) tryTo(() => controller.error(error));
        });
        // A socket destroyed without an end was reset. (An HTTP body reports its own failures as errors,
        // and undici's may close before its end has been read.)
        if (closeWithoutEndIsError) {
          input.once('close', () => {
            if (!ended) tryTo(() => controller.error(new Error('closed without an end')));
          });
        }
      },
      pull() {
        input.resume();
      },
      cancel() {
        input.destroy();
      },
    },
    { highWaterMark: READ_AHEAD_BYTES, size: (chunk) => chunk.byteLength },
  );
}

/** Ignores the TypeError of closing an already closed or errored stream. */
function tryTo(action: () => void): void {
  try {
    action();
  } catch {}
}
