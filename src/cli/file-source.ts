import { createReadStream, statSync } from 'node:fs';
import { IntegrityError } from '../client/errors.js';
import type { PlainSource } from '../client/plain-source.js';
import { webStreamOf } from './web-stream-of.js';

/** What identifies a file's content for a resume: a changed size or mtime means other bytes. */
export interface FileIdentity {
  readonly size: number;
  readonly mtimeMs: number;
}

/** The identity of `path` now. */
export function identityOf(path: string): FileIdentity {
  const stat = statSync(path);
  return { size: stat.size, mtimeMs: stat.mtimeMs };
}

/**
 * A file as a sender's source: re-read from any offset. Each re-read checks the file is what it was when
 * the transfer began: resuming with other bytes would splice two files (and, sealed, reuse a nonce on
 * different plaintext).
 */
export function fileSource(path: string, identity: FileIdentity): PlainSource {
  return {
    length: identity.size,
    from(offset: number): ReadableStream<Uint8Array> {
      const now = identityOf(path);
      if (now.size !== identity.size || now.mtimeMs !== identity.mtimeMs) {
        throw new IntegrityError(
          `${path} changed since the transfer began (size ${identity.size} → ${now.size}); refusing to resume with other bytes`,
        );
      }
      // 1 MiB reads: fewer, larger chunks through the pipeline (the default 64 KiB costs CPU per GiB).
      return webStreamOf(createReadStream(path, { start: offset, highWaterMark: 1024 * 1024 }));
    },
  };
}
