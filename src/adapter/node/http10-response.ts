import { ServerResponse } from 'node:http';

/** Node's response head as it stands between `writeHead()` and the first write (an internal field). */
interface PendingHead {
  _header: string | null;
}

/**
 * A ServerResponse that answers an HTTP/1.0 request with an `HTTP/1.0` status line, as piping-server does
 * (RFC 9110 §6.2 lets a server answer 1.1, but a 1.0 client may not expect it). Node writes `HTTP/1.1`
 * whatever the request said and offers no option; the head it builds in `writeHead()` stays unsent until the
 * first write, so the status line is corrected there. Node already keeps 1.0 responses unchunked
 * (close-delimited when no Content-Length is known) and closes the connection after them.
 */
export class VersionedServerResponse extends ServerResponse {
  // biome-ignore lint/suspicious/noExplicitAny: writeHead's overloads are passed through unchanged.
  override writeHead(...args: any[]): this {
    (ServerResponse.prototype.writeHead as (...a: unknown[]) => unknown).apply(this, args);
    if (this.req.httpVersion === '1.0') {
      const head = this as unknown as PendingHead;
      if (typeof head._header === 'string') head._header = head._header.replace(/^HTTP\/1\.1 /, 'HTTP/1.0 ');
    }
    return this;
  }
}
