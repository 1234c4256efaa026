import { type FileHandle, open, stat } from 'node:fs/promises';
import type { InputMark } from '../client/topics/batch-queue.js';
import { systemClock } from '../client/transfer-events.js';

/** Options of `followFile`. */
export interface FollowOptions {
  /** How often a file with nothing new is looked at again (default 250 ms). */
  readonly pollMs?: number;
  /** Bytes read at most per piece (default 64 KiB). */
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
  /**
   * Where an earlier run stopped: the same file (inode) is read on from that offset; another file at the
   * path (rotated meanwhile) is read from its start. Without it, the file there is read from its end.
   */
  readonly from?: InputMark;
}

/** Bytes read from a followed file, and where they were. */
export interface FollowPiece {
  readonly bytes: Uint8Array;
  readonly inode: number;
  /** The file offset of `bytes[0]`. */
  readonly offset: number;
}

/**
 * The bytes appended to `path`, as `tail -n 0 -F` sees them: from its end at the start, then whatever is
 * appended; a file that is replaced (rotated: another inode at the path) is read to its end and the new one
 * from its start; a file cut shorter (truncated) is read again from its start; a path that is missing is
 * waited for. Ends only when `signal` aborts. Each piece is a bounded read.
 */
export async function* followFile(path: string, options: FollowOptions = {}): AsyncGenerator<FollowPiece> {
  const pollMs = options.pollMs ?? 250;
  const buffer = new Uint8Array(options.chunkBytes ?? 64 * 1024);
  let file: FileHandle | undefined;
  let inode = -1;
  let position = 0;
  let first = true;
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      if (!file) {
        try {
          file = await open(path, 'r');
          const info = await file.stat();
          inode = info.ino;
          // Only the file there at the start is read from its end (or where the last run stopped); a new
          // one is read whole.
          const { from } = options;
          if (!first || (from && from.inode !== inode)) position = 0;
          else if (from && from.offset <= info.size) position = from.offset;
          else position = info.size;
          first = false;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
          first = false;
          await systemClock.sleep(pollMs, options.signal);
          continue;
        }
      }
      const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, position);
      if (bytesRead > 0) {
        yield { bytes: buffer.slice(0, bytesRead), inode, offset: position };
        position += bytesRead;
        continue;
      }
      const now = await stat(path).catch(() => undefined);
      if (!now || now.ino !== inode) {
        // Rotated or removed: the old file has been read to its end; the next one is opened (or waited for).
        await file.close();
        file = undefined;
        continue;
      }
      if (now.size < position) {
        position = 0;
        continue;
      }
      await systemClock.sleep(pollMs, options.signal);
    }
  } finally {
    await file?.close();
  }
}
