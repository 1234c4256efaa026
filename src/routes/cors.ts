import { RESUMABLE_HEADER } from '../protocol/resumable.js';
import { UPLOAD_COMPLETE_HEADER, UPLOAD_LENGTH_HEADER } from '../protocol/upload-headers.js';

/** Every pipe response may be read by any origin: the path is the capability, not the caller's origin. */
export const CORS_ORIGIN = { 'Access-Control-Allow-Origin': '*' } as const;

/**
 * Request headers a browser may send to a pipe; X-Piping carries application data end to end, the
 * resumable header says a page can resume (see `RESUMABLE_HEADER`), and the upload headers let a page send
 * its body in pieces and tell the length of a streamed body (see `protocol/upload-headers.ts`).
 */
const ALLOWED_HEADERS = `Content-Type, Content-Disposition, X-Piping, ${RESUMABLE_HEADER}, ${UPLOAD_COMPLETE_HEADER}, ${UPLOAD_LENGTH_HEADER}, Idempotency-Key, Content-Encoding, Authorization`;
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, OPTIONS';

/**
 * The answer to a CORS preflight. Private Network Access is granted only when asked for, so a public page
 * cannot reach a broker on a private network unless the browser announces it
 * (https://wicg.github.io/private-network-access/#headers).
 */
export function preflightHeaders(request: Request): Headers {
  const headers = new Headers({
    ...CORS_ORIGIN,
    'Access-Control-Allow-Methods': ALLOWED_METHODS,
    'Access-Control-Allow-Headers': ALLOWED_HEADERS,
    // Piping clients in a browser send OPTIONS themselves (scripts never see a real preflight) and read
    // Access-Control-Allow-Headers to learn whether the server passes X-Piping: a page may read it only when
    // it is exposed.
    'Access-Control-Expose-Headers': 'Access-Control-Allow-Headers',
    'Access-Control-Max-Age': '86400',
    'Content-Length': '0',
  });
  if (request.headers.get('Access-Control-Request-Private-Network') === 'true') {
    headers.set('Access-Control-Allow-Private-Network', 'true');
  }
  return headers;
}
