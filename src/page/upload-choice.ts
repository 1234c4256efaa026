import type { PipeProbe } from '../client/pipe-probe.js';
import type { UploadMode } from '../client/upload-mode.js';

/** Pieces of a piecewise upload: big enough that a round trip per piece costs little, small for memory. */
export const PIECE_BYTES = 8 * 1024 * 1024;

/**
 * Whether this browser can stream a request body (`fetch` with a ReadableStream and `duplex: 'half'`): a
 * browser that knows the option reads `duplex`, and one that streams does not turn the stream into a text
 * body with a Content-Type. Feature detection, as https://developer.chrome.com/docs/capabilities/web-apis/fetch-streaming-requests
 * describes it.
 */
export function canStreamRequests(): boolean {
  let duplexRead = false;
  try {
    const hasContentType = new Request('https://example.invalid/', {
      body: new ReadableStream(),
      method: 'POST',
      get duplex() {
        duplexRead = true;
        return 'half';
      },
    } as RequestInit).headers.has('Content-Type');
    return duplexRead && !hasContentType;
  } catch {
    return false;
  }
}

/**
 * The HTTP version the page reached `url`'s origin with, when the browser says (Resource Timing's
 * `nextHopProtocol`: `h2`, `h3`, `http/1.1`): streamed request bodies need HTTP/2 or later.
 */
export function protocolTo(url: URL): string | undefined {
  if (url.origin !== location.origin) return undefined;
  const [navigation] = performance.getEntriesByType('navigation') as PerformanceNavigationTiming[];
  return navigation?.nextHopProtocol || undefined;
}

/** How the page uploads, and the words it says so in. */
export interface UploadChoice {
  readonly mode: UploadMode;
  readonly label: string;
}

/**
 * The best upload this browser, connection and server allow: streamed over HTTP/2; in resumable pieces
 * where the server keeps a transfer between requests; otherwise the whole body in one request.
 */
export function chooseUpload(url: URL, probe: PipeProbe | undefined, sealed: boolean): UploadChoice {
  const protocol = protocolTo(url);
  if (canStreamRequests() && (protocol === 'h2' || protocol === 'h3')) {
    return {
      mode: { kind: 'stream' },
      label: `Streaming upload over ${protocol === 'h3' ? 'HTTP/3' : 'HTTP/2'}.`,
    };
  }
  if (probe?.resumable) {
    return {
      mode: { kind: 'pieces', pieceBytes: PIECE_BYTES },
      label: `Upload in pieces of ${PIECE_BYTES / 1024 / 1024} MiB: this server resumes a broken upload.`,
    };
  }
  return {
    mode: { kind: 'whole' },
    label: sealed
      ? 'Whole-file upload: the encrypted file is assembled in the browser first (this connection cannot stream and this server cannot resume).'
      : 'Whole-file upload (this connection cannot stream and this server cannot resume).',
  };
}
