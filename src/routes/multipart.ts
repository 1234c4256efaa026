import type { ByteSource } from '../byte-source.js';

/**
 * A streaming reader of the first part of a `multipart/form-data` body (RFC 7578), for browsers and
 * `curl -F` uploads: the part's bytes stream out as they arrive, nothing is buffered beyond one delimiter's
 * length plus one chunk, and the rest of the body is read and discarded.
 */

const LF = 10;
const DASH = 45;
/** Longest preamble or part head we read before giving up on a body. */
const MAX_HEAD_BYTES = 16 * 1024;

/** The body is not the multipart it claims to be; answered 400 before anything is sent on. */
export class MultipartError extends Error {
  readonly code = 'MULTIPART_INVALID';
  override name = 'MultipartError';
}

/** The boundary of a `multipart/form-data` Content-Type, or undefined for any other type. */
export function multipartBoundaryOf(contentType: string | null): string | undefined {
  if (!contentType || !/^\s*multipart\/form-data\s*(;|$)/i.test(contentType)) return undefined;
  const match = /;\s*boundary=(?:"([^"]*)"|([^\s;]*))/i.exec(contentType);
  const boundary = match?.[1] ?? match?.[2];
  if (!boundary) throw new MultipartError('multipart/form-data without a boundary.');
  // RFC 2046 section 5.1.1: 1 to 70 characters. A longer one is refused, not cut (it would never match).
  if (boundary.length > 70) throw new MultipartError('The multipart boundary is longer than 70 characters.');
  return boundary;
}

export interface MultipartPart {
  /** The part's own headers (Content-Type, Content-Disposition, ...). */
  readonly headers: Headers;
  /** The part's bytes; fails if the body ends before the closing delimiter. */
  readonly body: ByteSource;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0]!;
  const last = haystack.length - needle.length;
  for (let i = haystack.indexOf(first, from); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function parseHead(head: string): Headers {
  const headers = new Headers();
  for (const line of head.split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError('A multipart part header has no name.');
    try {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch {
      throw new MultipartError('A multipart part header is malformed.');
    }
  }
  return headers;
}

/**
 * Reads up to the first part's bytes and returns its headers and a stream of its body.
 * @throws MultipartError when the preamble or the part head is malformed or too long.
 */
export async function readFirstPart(body: ByteSource, boundary: string): Promise<MultipartPart> {
  const encoder = new TextEncoder();
  const dashBoundary = encoder.encode(`--${boundary}`);
  const delimiter = encoder.encode(`\r\n--${boundary}`);
  let buffer: Uint8Array = new Uint8Array(0);

  const fill = async (): Promise<boolean> => {
    const chunk = await body.read();
    if (chunk === null) return false;
    buffer = concat(buffer, chunk);
    return true;
  };

  // Skip the preamble: the first dash-boundary opens the body or follows a CRLF (RFC 2046 section 5.1.1).
  let start = -1;
  for (;;) {
    if (buffer.length >= dashBoundary.length) {
      const at =
        indexOf(buffer.subarray(0, dashBoundary.length), dashBoundary, 0) === 0
          ? 0
          : indexOf(buffer, delimiter, 0);
      if (at !== -1) start = at + (at === 0 && buffer[0] === DASH ? dashBoundary.length : delimiter.length);
    }
    if (start !== -1 && buffer.length >= start + 2) break;
    if (buffer.length > MAX_HEAD_BYTES)
      throw new MultipartError('No multipart boundary in the first 16 KiB.');
    if (!(await fill())) throw new MultipartError('The multipart body ended before its first part.');
  }
  if (buffer[start] === DASH && buffer[start + 1] === DASH)
    throw new MultipartError('The multipart body has no part.');

  // The part head ends at the first empty line.
  const headEnd = encoder.encode('\r\n\r\n');
  let end: number;
  for (;;) {
    end = indexOf(buffer, headEnd, start);
    if (end !== -1) break;
    if (buffer.length - start > MAX_HEAD_BYTES)
      throw new MultipartError('A multipart part head exceeds 16 KiB.');
    if (!(await fill())) throw new MultipartError('The multipart body ended inside a part head.');
  }
  // The head starts after the boundary line's CRLF (transport padding before it is allowed and ignored).
  const lineEnd = buffer.indexOf(LF, start);
  const headers = parseHead(new TextDecoder().decode(buffer.subarray(lineEnd + 1, end + 2)));
  buffer = buffer.subarray(end + 4);

  let finished = false;
  let drained = false;
  const drainRest = async () => {
    // The remaining parts are not forwarded, but the sender's request must be read to its end.
    drained = true;
    try {
      while ((await body.read()) !== null) {}
    } catch {}
  };

  const part: ByteSource = {
    async read() {
      if (finished) {
        if (!drained) await drainRest();
        return null;
      }
      for (;;) {
        const at = indexOf(buffer, delimiter, 0);
        if (at !== -1) {
          const last = buffer.slice(0, at);
          finished = true;
          buffer = new Uint8Array(0);
          if (last.length > 0) return last;
          await drainRest();
          return null;
        }
        // Everything but a possible delimiter prefix at the tail is part data.
        const safe = buffer.length - (delimiter.length - 1);
        if (safe > 0) {
          const chunk = buffer.slice(0, safe);
          buffer = buffer.slice(safe);
          return chunk;
        }
        if (!(await fill()))
          throw new MultipartError('The multipart body ended before its closing boundary.');
      }
    },
    cancel(reason) {
      if (!drained) body.cancel(reason);
      finished = true;
      drained = true;
    },
  };
  return { headers, body: part };
}
