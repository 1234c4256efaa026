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
 * Response headers as a list of pairs. A repeated header (X-Piping) stays one entry per value: a `Headers`
 * object would join the values with ", " when read, which corrupts a value that holds a comma.
 */
export type HeaderPairs = Array<[string, string]>;

/**
 * The headers a sender hands to its receivers: Content-Type, Content-Length, Content-Disposition (from the
 * body itself: the request, or a multipart part) and every X-Piping value of the request, in order.
 */
export function passthroughHeaders(body: BodyHeaders, xPiping: readonly string[]): PipeHeaders {
  const out: Array<readonly [string, string]> = [];
  if (body.contentType) out.push(['Content-Type', safeContentType(body.contentType)]);
  if (body.contentLength && /^[0-9]+$/.test(body.contentLength))
    out.push(['Content-Length', body.contentLength]);
  if (body.contentDisposition) out.push(['Content-Disposition', body.contentDisposition]);
  for (const value of xPiping) out.push(['X-Piping', value]);
  return out;
}

/**
 * Passed headers a page on another origin cannot read unless they are exposed: Content-Type and
 * Content-Length are CORS-safelisted (https://fetch.spec.whatwg.org/#cors-safelisted-response-header-name).
 */
const EXPOSED = new Set(['content-disposition', 'x-piping']);

/** A receiver's response headers: the passed headers, plus CORS exposing them and no indexing by robots. */
export function receiverHeaders(passed: PipeHeaders): HeaderPairs {
  const headers: HeaderPairs = [
    ...(Object.entries(CORS_ORIGIN) as HeaderPairs),
    ['X-Robots-Tag', 'none'],
    ['X-Content-Type-Options', 'nosniff'],
  ];
  const exposed = new Set<string>();
  for (const [name, value] of passed) {
    headers.push([name, value]);
    if (EXPOSED.has(name.toLowerCase())) exposed.add(name);
  }
  if (exposed.size > 0) headers.push(['Access-Control-Expose-Headers', [...exposed].join(', ')]);
  return headers;
}

/** Sets `name` in `headers` (replacing any value it had). */
export function setHeader(headers: HeaderPairs, name: string, value: string): void {
  const lower = name.toLowerCase();
  const at = headers.findIndex(([n]) => n.toLowerCase() === lower);
  if (at === -1) headers.push([name, value]);
  else headers[at] = [name, value];
}
