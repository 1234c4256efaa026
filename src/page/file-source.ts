import { makeZip, predictLength } from 'client-zip';
import type { PlainSource } from '../client/plain-source.js';

/**
 * A file (or a text as a Blob) as a sender's source: read from any offset again by slicing it, so a resumed
 * upload reads the disk again instead of keeping what it sent; `blob` hands a slice to a whole or piecewise
 * upload without a copy.
 */
export function blobSource(blob: Blob): PlainSource {
  return {
    length: blob.size,
    from: (offset) => blob.slice(offset).stream(),
    blob: (start, end) => blob.slice(start, end),
  };
}

/**
 * Several files as one ZIP stream, made as it is read (client-zip; stored, not compressed, so its length is
 * known up front and receivers get a Content-Length). A resume makes the same archive again (the files'
 * names, sizes and dates fix every byte) and skips to the offset.
 */
export function zipSource(files: readonly File[]): PlainSource {
  const entries = () =>
    files.map((file) => ({ input: file, name: file.name, lastModified: file.lastModified }));
  return {
    length: Number(
      predictLength(
        files.map((file) => ({ name: file.name, size: file.size, lastModified: file.lastModified })),
      ),
    ),
    from: (offset) => skipped(makeZip(entries()), offset),
  };
}

/** `stream` without its first `count` bytes. */
function skipped(stream: ReadableStream<Uint8Array>, count: number): ReadableStream<Uint8Array> {
  if (count === 0) return stream;
  let left = count;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        if (left >= chunk.byteLength) {
          left -= chunk.byteLength;
          return;
        }
        out.enqueue(left > 0 ? chunk.subarray(left) : chunk);
        left = 0;
      },
    }),
  );
}
