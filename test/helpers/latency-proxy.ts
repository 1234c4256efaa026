import { createConnection, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** A TCP proxy a test owns, in front of a server (a redis-server, say), adding latency on demand. */
export interface LatencyProxy {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`: where a client goes to reach the target through the proxy. */
  readonly url: string;
  /**
   * From now on every chunk, in both directions, is delivered `ms` after it arrived at the proxy. Chunks
   * already queued keep the time they were given; order is kept per direction, so after lowering the delay a
   * chunk still waits for the ones queued before it.
   */
  setDelay(ms: number): void;
  /** Destroys every current connection, as a crash would; new connections are still accepted. */
  cut(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/**
 * Bytes a direction may hold back before its source is paused. With a delay, throughput is bounded by this
 * divided by the delay (1 MiB per 100 ms = 10 MiB/s): plenty for tests, and memory stays bounded.
 */
const HIGH_WATER_BYTES = 1024 * 1024;
/** A target that neither accepts nor refuses must not leave the client hanging on a half-made pair. */
const CONNECT_TIMEOUT_MS = 5_000;
const CLOSE_TIMEOUT_MS = 5_000;

interface Queued {
  readonly chunk: Buffer;
  readonly due: number;
}

/**
 * One direction of a pair: chunks from `source` wait in a FIFO until due, then go to `destination`. A single
 * timer serves the head of the queue (not one timer per chunk) so that a chunk queued under a shorter delay
 * can never overtake one queued before it.
 */
class Lane {
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The destination refused more (`write` returned false): nothing moves until it drains. */
  private congested = false;
  private sourceEnded = false;
  private stopped = false;

  constructor(
    private readonly source: Socket,
    private readonly destination: Socket,
    private readonly delay: () => number,
  ) {
    source.on('data', (chunk: Buffer) => this.push(chunk));
    source.on('end', () => {
      // A half-close travels like data: after what was sent before it.
      this.sourceEnded = true;
      this.flush();
    });
  }

  /** Drops what is queued and stops moving: the pair is being torn down. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private push(chunk: Buffer): void {
    if (this.stopped) return;
    this.queue.push({ chunk, due: performance.now() + this.delay() });
    this.queuedBytes += chunk.byteLength;
    // A pending timer or drain will get to this chunk after the ones before it.
    if (this.timer === undefined && !this.congested) this.flush();
    else this.regulateSource();
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || this.destination.destroyed) return;
    while (!this.congested) {
      const head = this.queue[0];
      if (!head) break;
      const wait = head.due - performance.now();
      if (wait > 0) {
        // Timers round to whole milliseconds and may fire a fraction early: never schedule less than 1 ms.
        this.timer = setTimeout(() => this.flush(), Math.max(1, Math.ceil(wait)));
        break;
      }
      this.queue.shift();
      this.queuedBytes -= head.chunk.byteLength;
      if (!this.destination.write(head.chunk)) {
        this.congested = true;
        this.destination.once('drain', () => {
          this.congested = false;
          this.flush();
        });
      }
    }
    if (this.queue.length === 0 && this.sourceEnded && !this.destination.writableEnded)
      this.destination.end();
    this.regulateSource();
  }

  /** Pauses the source while the destination is congested or too much is held back, so the peer slows down. */
  private regulateSource(): void {
    if (this.stopped || this.source.destroyed) return;
    if (this.congested || this.queuedBytes >= HIGH_WATER_BYTES) this.source.pause();
    else if (this.source.isPaused()) this.source.resume();
  }
}

/** A client connection and the proxy's connection to the target, with a lane each way. */
class Pair {
  private readonly lanes: Lane[];
  private tornDown = false;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    delay: () => number,
    private readonly onGone: (pair: Pair) => void,
  ) {
    this.lanes = [new Lane(client, upstream, delay), new Lane(upstream, client, delay)];
    let open = 2;
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      // An error on either side ends the pair; the listener also keeps the error from crashing the process.
      socket.on('error', () => this.tearDown());
      let ended = false;
      socket.on('end', () => {
        ended = true;
      });
      socket.on('close', (hadError) => {
        // Closing without a FIN first (a reset, a destroy) is a drop the other side must see too; a clean
        // close leaves the other lane to deliver what it still holds and then pass the FIN on.
        if (hadError || !ended) this.tearDown();
        open--;
        if (open === 0) this.onGone(this);
      });
    }
  }

  /** Destroys both sockets at once, dropping whatever is still queued. */
  tearDown(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    for (const lane of this.lanes) lane.stop();
    this.client.destroy();
    this.upstream.destroy();
  }
}

/**
 * Starts a proxy on 127.0.0.1 (a free port) forwarding to `targetHost:targetPort`, with no delay until
 * `setDelay` says otherwise. Each accepted connection opens its own connection to the target.
 */
export async function startLatencyProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<LatencyProxy> {
  let delayMs = 0;
  const pairs = new Set<Pair>();

  // Half-open on both sides, so that a client's FIN reaches the target after the data it sent before it.
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = createConnection({ port: targetPort, host: targetHost, allowHalfOpen: true });
    const connectTimer = setTimeout(
      () => upstream.destroy(new Error(`latency proxy: no connection to ${targetHost}:${targetPort}`)),
      CONNECT_TIMEOUT_MS,
    );
    const clearConnectTimer = () => clearTimeout(connectTimer);
    upstream.once('connect', clearConnectTimer);
    upstream.once('close', clearConnectTimer);
    // Until the target answers, Node buffers what is written to `upstream`; `write` still reports congestion.
    const pair = new Pair(
      client,
      upstream,
      () => delayMs,
      (gone) => pairs.delete(gone),
    );
    pairs.add(pair);
  });
  // A listening server only errors on odd conditions (fd exhaustion on accept): ignore rather than crash.
  const ignore = () => {};
  server.on('error', ignore);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as { port: number };

  const destroyAll = () => {
    for (const pair of pairs) pair.tearDown();
  };
  let closing: Promise<void> | undefined;

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    setDelay(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency proxy: bad delay ${ms}`);
      delayMs = ms;
    },
    cut: destroyAll,
    close() {
      closing ??= (async () => {
        // `server.close` calls back only once every connection is gone: destroy them first.
        const closed = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () =>
              reject(
                new Error(`latency proxy on ${port}: connections still open after ${CLOSE_TIMEOUT_MS} ms`),
              ),
            CLOSE_TIMEOUT_MS,
          );
          server.close(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        destroyAll();
        await closed;
      })();
      return closing;
    },
  };
}
