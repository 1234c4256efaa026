import { type FileHandle, open } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { PlainSink } from '../client/receive.js';

/** A file the plaintext goes to: appended to (a restarted receiver continues it) or started anew. */
export interface FileSink extends PlainSink {
  close(): Promise<void>;
}

/** Opens `path` to continue after its first `keep` bytes (cut to that length), or from empty. */
export async function fileSink(path: string, keep: number): Promise<FileSink> {
  const handle: FileHandle = await open(path, keep > 0 ? 'r+' : 'w');
  let regular: boolean;
  try {
    regular = (await handle.stat()).isFile();
    // Only a regular file has a length to cut; /dev/null or a FIFO is written as it is.
    if (regular) await handle.truncate(keep);
  } catch (error) {
    await handle.close();
    throw error;
  }
  let position: number | null = regular ? keep : null;
  return {
    async write(chunk) {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.byteLength - done, position);
        done += bytesWritten;
        if (position !== null) position += bytesWritten;
      }
    },
    close: () => handle.close(),
  };
}

/** stdout (or any Node writable), with its backpressure. */
export function streamSink(stream: Writable): PlainSink {
  return {
    write: (chunk) =>
      new Promise((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        stream.once('error', onError);
        if (stream.write(chunk)) {
          stream.off('error', onError);
          resolve();
        } else {
          stream.once('drain', () => {
            stream.off('error', onError);
            resolve();
          });
        }
      }),
  };
}
