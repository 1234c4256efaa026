import { connect } from 'node:net';

/**
 * How a raw exchange ended: the server closed the connection (`closed`: a FIN), cut it (`reset`: an RST or
 * another socket error), or the test stopped waiting while the connection was still open (`timeout`).
 * A timeout is never a close: a server that hangs must not pass for one that hung up.
 */
export type RawEnd = 'closed' | 'reset' | 'timeout';

/** What came back on a raw connection. */
export interface RawOutcome {
  /** The status of the first response, if one came. */
  readonly status: number | undefined;
  /** Everything the server wrote. */
  readonly text: string;
  /** Who ended the exchange, and how. */
  readonly end: RawEnd;
  /** Whether the server ended the connection (closed or reset) within the wait, rather than the test giving up. */
  readonly closed: boolean;
  /** Milliseconds from the write until the server ended the connection, or until the test gave up. */
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
    const finish = (end: RawEnd) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({
        status: match ? Number(match[1]) : undefined,
        text,
        end,
        closed: end !== 'timeout',
        ms: performance.now() - started,
      });
    };
    const timer = setTimeout(() => finish('timeout'), waitMs);
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
    });
    // A FIN from the server: it has said all it will say.
    socket.on('end', () => finish('closed'));
    socket.on('error', () => finish('reset'));
    socket.on('close', () => finish('closed'));
    socket.write(data);
  });
}
