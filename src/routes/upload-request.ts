import type { PipeHeaders } from '../broker/types.js';
import {
  parseUploadComplete,
  parseUploadLength,
  UPLOAD_COMPLETE_HEADER,
  UPLOAD_LENGTH_HEADER,
} from '../protocol/upload-headers.js';
import { fail } from './http-error.js';

// What a sender's request says of its body's place in the transfer (`Upload-Complete`, `Upload-Length`):
// checked before the transfer is touched, refused with one line.

/**
 * Whether the request is one piece of the body (`Upload-Complete: ?0`). Refused where the broker cannot
 * hold a transfer between pieces, and for a multipart body (whose part would end in the first piece).
 */
export function pieceOf(headers: Headers, brokerResumable: boolean, multipart: boolean): boolean {
  const raw = headers.get(UPLOAD_COMPLETE_HEADER);
  const complete = parseUploadComplete(raw);
  if (complete === null) {
    fail(400, `${UPLOAD_COMPLETE_HEADER} should be ?1 or ?0, but it is '${(raw ?? '').slice(0, 32)}'.`);
  }
  if (complete !== false) return false;
  if (!brokerResumable) {
    fail(
      400,
      `${UPLOAD_COMPLETE_HEADER}: ?0 needs a broker that holds a transfer between pieces; this one (in memory, or without a grace period) cannot: send the body in one request.`,
    );
  }
  if (multipart) fail(400, `A multipart upload cannot be sent in pieces (${UPLOAD_COMPLETE_HEADER}: ?0).`);
  return true;
}

/**
 * The whole body's length from `Upload-Length`, checked against the size cap and against the request's
 * own Content-Length where that says the same thing (the whole rest of the body: not a piece).
 */
export function uploadLengthOf(
  headers: Headers,
  piece: boolean,
  resumeAt: number | undefined,
  maxBodyBytes: number | undefined,
): number | undefined {
  const raw = headers.get(UPLOAD_LENGTH_HEADER);
  const length = parseUploadLength(raw);
  if (length === null) {
    fail(
      400,
      `${UPLOAD_LENGTH_HEADER} should be a whole number of bytes, but it is '${(raw ?? '').slice(0, 32)}'.`,
    );
  }
  if (length === undefined) return undefined;
  if (maxBodyBytes !== undefined && length > maxBodyBytes) {
    fail(413, `The body is ${length} bytes; this server accepts at most ${maxBodyBytes}.`);
  }
  // The request's Content-Length is the whole body's only on a first request that is not a piece; a resumed
  // one's end is checked against the length where it ends (a final piece short of it fails the transfer).
  const declared = headers.get('content-length');
  if (!piece && resumeAt === undefined && declared !== null && /^[0-9]+$/.test(declared)) {
    if (Number(declared) !== length) {
      fail(400, `Content-Length (${declared}) and ${UPLOAD_LENGTH_HEADER} (${length}) disagree.`);
    }
  }
  return length;
}

/** The Content-Length a transfer's receivers were given, if any. */
export function declaredLengthOf(headers: PipeHeaders | undefined): number | undefined {
  const value = headers?.find(([name]) => name.toLowerCase() === 'content-length')?.[1];
  return value !== undefined && /^[0-9]{1,15}$/.test(value) ? Number(value) : undefined;
}
