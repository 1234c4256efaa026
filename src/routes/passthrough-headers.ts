import type { PipeHeaders } from '../broker/types.js';
import { CORS_ORIGIN } from './cors.js';

/**
 * Serves `text/html` as `text/plain` (parameters kept), so a pipe can never serve a page on the broker's origin.
 * Other types pass unchanged.
 */
export function safeContentType(contentType: string): string {
  const match = /^\s*([^;\s]*)(.*)$/s.exec(contentType);
  if (!match) return contentType;
  return match[1]!.toLowerCase() === 'text/html' ? `text/plain${match[2]}` : contentType;
}

export interface BodyHeaders {
  readonly contentType?: string | null;
  readonly contentLength?: string | null;
  readonly contentDisposition?: string | null;
}

/**
 * The headers a sender hands to its receivers: Content-Type, Content-Length, Content-Disposition (from the
 * body itself: the request, or a multipart part) and every X-Piping header of the request, in order.
 */
export function passthroughHeaders(body: BodyHeaders, request: Headers): PipeHeaders {
  const out: Array<readonly [string, string]> = [];
  if (body.contentType) out.push(['Content-Type', safeContentType(body.contentType)]);
  if (body.contentLength && /^[0-9]+$/.test(body.contentLength))
    out.push(['Content-Length', body.contentLength]);
  if (body.contentDisposition) out.push(['Content-Disposition', body.contentDisposition]);
  // Headers iterates combined values in name order; X-Piping values stay in the order the sender wrote them.
  for (const [name, value] of request) if (name === 'x-piping') out.push(['X-Piping', value]);
  return out;
}

/** A receiver's response headers: the passed headers, plus CORS exposing them and no indexing by robots. */
export function receiverHeaders(passed: PipeHeaders): Headers {
  const headers = new Headers({
    ...CORS_ORIGIN,
    'X-Robots-Tag': 'none',
    'X-Content-Type-Options': 'nosniff',
  });
  const exposed = new Set<string>();
  for (const [name, value] of passed) {
    headers.append(name, value);
    exposed.add(name);
  }
  if (exposed.size > 0) headers.set('Access-Control-Expose-Headers', [...exposed].join(', '));
  return headers;
}
