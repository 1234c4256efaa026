import { connect } from 'node:net';

/** What came back on a raw connection. */
export interface RawOutcome {
  /** The status of the first response, if one came. */
  readonly status: number | undefined;
  /** Everything the server wrote. */
  readonly text: string;
  /** Whether the server closed the connection within the wait (rather than the test giving up). */
  readonly closed: boolean;
  /** Milliseconds until the close, or until the test gave up. */
  readonly ms: number;
}

/**
 * Writes `data` (bytes no HTTP client would send) to `host:port` and collects the answer until the server
 * closes the connection or `waitMs` passes.
 */
export function rawExchange(port: number, data: string | Uint8Array, waitMs = 5000): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect({ port, host: '127.0.0.1' });
    let text = '';
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({
        status: match ? Number(match[1]) : undefined,
        text,
        closed,
        ms: performance.now() - started,
      });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.write(data);
  });
}
