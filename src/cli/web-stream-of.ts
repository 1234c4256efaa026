import type { Readable } from 'node:stream';

/**
 * A Node readable as a web stream that hands over everything buffered at each pull, as one chunk. A pipe
 * gives 64 KiB per read; when the consumer is slower than the producer, Node's buffer fills (up to the
 * readable's highWaterMark) and `read()` returns it joined, so the stages after this one see a few large
 * chunks instead of many small ones: far fewer promise hops and syscalls per GiB. A slow producer still
 * gets its small chunks through at once (no waiting to fill a batch).
 */
/** What the web side may hold ahead of its reader. */
const READ_AHEAD_BYTES = 1024 * 1024;

export function webStreamOf(readable: Readable): ReadableStream<Uint8Array> {
  let failure: Error | undefined;
  let ended = false;
  readable.on('error', (error) => {
    failure = error;
  });
  readable.once('end', () => {
    ended = true;
  });
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        return new Promise<void>((resolve, reject) => {
          let settled = false;
          const attempt = () => {
            if (settled) return;
            if (failure) {
              cleanup();
              reject(failure);
              return;
            }
            const chunk = readable.read() as Buffer | null;
            if (chunk !== null) {
              cleanup();
              controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
              resolve();
            } else if (ended || readable.readableEnded) {
              cleanup();
              controller.close();
              resolve();
            }
          };
          const cleanup = () => {
            settled = true;
            readable.off('readable', attempt);
            readable.off('end', attempt);
            readable.off('error', attempt);
          };
          readable.on('readable', attempt);
          readable.on('end', attempt);
          readable.on('error', attempt);
          attempt();
        });
      },
      cancel(reason) {
        readable.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    // Read ahead up to 1 MiB: the producer (a socket, a pipe) keeps flowing while the consumer is busy with
    // the previous chunk, instead of pausing at Node's own small buffer between pulls.
    { highWaterMark: READ_AHEAD_BYTES, size: (chunk) => chunk.byteLength },
  );
}
