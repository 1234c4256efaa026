import type { PlainSource } from './plain-source.js';

// The body of a request that cannot stream (a browser over HTTP/1.1): the whole body or one piece of it as a
// Blob, made before the request (see `UploadMode`).

/** A Blob body and whether it reaches the body's end. */
export interface BlobBody {
  readonly blob: Blob;
  readonly last: boolean;
}

/** The source's bytes from `start` as a slice of it (a file: nothing is read), up to `limit` of them. */
export function sliceOf(
  source: PlainSource,
  start: number,
  limit: number | undefined,
  total: number,
): BlobBody {
  const end = limit === undefined ? total : Math.min(total, start + limit);
  return { blob: source.blob!(start, end), last: end === total };
}

/**
 * Reads the wire bytes into a Blob, up to `limit` of them (a piece), so at most a piece is held at once.
 * Whether they reach the body's end: from the wire length when known, else by reading one chunk more (the
 * next piece reads it again from the source).
 */
export async function blobOf(
  body: ReadableStream<Uint8Array>,
  limit: number | undefined,
  start: number,
  wireLength: number | undefined,
): Promise<BlobBody> {
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  try {
    while (limit === undefined || size < limit) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      const part =
        limit !== undefined && size + value.byteLength > limit ? value.subarray(0, limit - size) : value;
      parts.push(part);
      size += part.byteLength;
    }
    if (!ended && wireLength !== undefined) ended = start + size >= wireLength;
    else if (!ended) {
      for (;;) {
        const next = await reader.read();
        if (next.done) ended = true;
        if (next.done || next.value.byteLength > 0) break;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return { blob: new Blob(parts as BlobPart[]), last: ended };
}
