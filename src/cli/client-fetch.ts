import { Agent, type Dispatcher, request } from 'undici';
import { chunkStreamOf } from './chunk-stream-of.js';
import { webStreamOf } from './web-stream-of.js';

/** How the CLI's fetch hands over response bodies. */
export interface ClientFetchOptions {
  /**
   * Join what piled up into one chunk per read (the default: fewer, larger chunks for `recv`), or hand over
   * each chunk as it came (the tunnel, which cuts records from them in place).
   */
  readonly joinChunks?: boolean;
}

/**
 * The CLI's fetch. The client core speaks fetch (web standards, so the page reuses it); here it is served
 * by undici's lower-level `request`, whose response body is a Node stream read with `webStreamOf`: what
 * piles up while the client is busy is handed on as one chunk, which with fetch's own body stream (64 KiB
 * pieces, a promise chain each) cost about a third more CPU per GiB. The agent sends TCP keepalive probes
 * after 15 s idle (a NAT keeps the mapping of a connection that waits for its peer), has no header or
 * body timeout of its own (a receiver may wait hours for its sender; stalls are the client's stall timeout
 * to judge), and bounds the connect.
 */
export function clientFetch(options: ClientFetchOptions = {}): typeof fetch {
  const dispatcher = new Agent({
    connect: { keepAlive: true, keepAliveInitialDelay: 15_000, timeout: 30_000 },
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    // A header given twice in pairs (X-Piping) stays two lines: `Headers` would join them into one.
    const headers: Record<string, string | string[]> = {};
    const pairs = Array.isArray(init.headers) ? init.headers : [...new Headers(init.headers).entries()];
    for (const [name, value] of pairs) {
      const key = name.toLowerCase();
      const had = headers[key];
      headers[key] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
    }
    const method = (init.method ?? 'GET').toUpperCase() as Dispatcher.HttpMethod;
    let answer: Dispatcher.ResponseData;
    try {
      answer = await request(String(input), {
        dispatcher,
        method,
        headers,
        body: (init.body ?? null) as Dispatcher.RequestOptions['body'],
        signal: init.signal ?? null,
      });
    } catch (error) {
      // As fetch reports a network failure: a TypeError whose cause is the socket's error.
      throw new TypeError('fetch failed', { cause: error });
    }
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) responseHeaders.append(name, one);
    }
    const bodyless = method === 'HEAD' || answer.statusCode === 204 || answer.statusCode === 304;
    if (bodyless) answer.body.resume();
    return new Response(
      bodyless
        ? null
        : options.joinChunks === false
          ? chunkStreamOf(answer.body, false)
          : webStreamOf(answer.body),
      {
        status: answer.statusCode,
        headers: responseHeaders,
      },
    );
  }) as typeof fetch;
}
