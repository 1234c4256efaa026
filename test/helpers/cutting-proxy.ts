import { createConnection, createServer, type Socket } from 'node:net';
import { tcpSendQueue } from './tcp-send-queue.js';

/**
 * What the proxy does to one accepted connection. Positions are 0-based offsets into the raw TCP byte stream
 * of that connection and direction ("up" is client→server, "down" is server→client), HTTP headers included.
 * A position the stream never reaches does nothing.
 */
export interface ConnectionFaults {
  /**
   * Cut client→server at this position: when byte `cutUpAt` arrives, the bytes before it go through, that
   * byte and everything after it do not, and both sockets are reset (RST) once the bytes forwarded so far
   * have reached both peers' kernels. A stream of exactly `cutUpAt` bytes is not cut.
   */
  readonly cutUpAt?: number;
  /** Cut server→client at this position, as `cutUpAt` does upward. */
  readonly cutDownAt?: number;
  /** Flip (xor 0xff) the client→server byte at this position. */
  readonly flipUpAt?: number;
  /** Flip (xor 0xff) the server→client byte at this position. */
  readonly flipDownAt?: number;
  /**
   * A cut after the last byte: everything the server sends goes through, but when the server's stream is
   * "over" the client gets a reset instead of a clean end. "Over" is either the server ending its side (FIN)
   * or the server sending nothing for `idleMs` since its last byte (a keep-alive HTTP/1.1 server never ends
   * after a response; note that a server merely waiting mid-stream for longer than `idleMs` counts too).
   * The time a write to the client waits for the client to read does not count as idle.
   */
  readonly cutDownAtEnd?: boolean;
  /**
   * As `cutDownAtEnd`, but the final `holdLastDownBytes` bytes the server sends never reach the client: the
   * proxy always holds back the last k bytes it received, and drops them when the stream is over. For a
   * chunked HTTP/1.1 response, 5 withholds the terminating `0\r\n\r\n`: the client has every byte of the
   * body but cannot know it ended. Implies `cutDownAtEnd`.
   */
  readonly holdLastDownBytes?: number;
  /** Silence that ends the server's stream for `cutDownAtEnd` / `holdLastDownBytes` (default 200 ms). */
  readonly idleMs?: number;
}

/** Decides the faults of each accepted connection, numbered from 0 in the order they were accepted. */
export type FaultPlan = (connectionIndex: number) => ConnectionFaults | undefined;

/** Options of `startCuttingProxy`. */
export interface CuttingProxyOptions {
  readonly target: { readonly host: string; readonly port: number };
  /** No plan: every connection passes untouched. */
  readonly plan?: FaultPlan;
  /**
   * How long a cut waits for the bytes forwarded before it to reach the peers' kernels (a reset discards
   * what is still queued). Only a peer that stops reading keeps it waiting; after this the reset goes anyway.
   */
  readonly drainTimeoutMs?: number;
}

/** A fault-injecting TCP proxy on 127.0.0.1 that a test owns. */
export interface CuttingProxy {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Cuts done so far (`cutUpAt`, `cutDownAt` and the resets of `cutDownAtEnd` / `holdLastDownBytes`). */
  readonly cuts: number;
  /** Bytes flipped so far. */
  readonly flips: number;
  /** Bytes the proxy holds in memory right now, over all connections and both directions. */
  bufferedBytes(): number;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** A fault's position or size that is not a whole number of bytes (a bug in the test's plan). */
export class BadFaultPlanError extends Error {
  readonly code = 'BAD_FAULT_PLAN';
  constructor(message: string) {
    super(message);
    this.name = 'BadFaultPlanError';
  }
}

const DEFAULT_IDLE_MS = 200;
const DEFAULT_DRAIN_TIMEOUT_MS = 2_000;
const DRAIN_POLL_MS = 5;
/** A target that neither accepts nor refuses must not leave the client hanging on a half-made pair. */
const CONNECT_TIMEOUT_MS = 5_000;
const EMPTY = Buffer.alloc(0);

function checkFaults(faults: ConnectionFaults): ConnectionFaults {
  for (const key of [
    'cutUpAt',
    'cutDownAt',
    'flipUpAt',
    'flipDownAt',
    'holdLastDownBytes',
    'idleMs',
  ] as const) {
    const value = faults[key];
    if (value !== undefined && !(Number.isInteger(value) && value >= 0) && value !== Number.POSITIVE_INFINITY)
      throw new BadFaultPlanError(`cutting proxy: ${key} must be a whole number >= 0, got ${value}`);
  }
  return faults;
}

interface LaneFaults {
  readonly cutAt: number | undefined;
  readonly flipAt: number | undefined;
  /** Bytes held back until the stream is over; undefined: the stream ends cleanly, nothing held. */
  readonly holdLast: number | undefined;
  readonly idleMs: number;
}

interface Counters {
  cuts: number;
  flips: number;
}

/**
 * One direction of a connection. Reads pause while the destination refuses more (`write` returned false)
 * and resume on its 'drain', so the proxy holds at most a socket's high-water mark plus one chunk per
 * direction, and a slow reader slows the writer down through TCP's own flow control.
 */
class Lane {
  /** Bytes of the source's stream seen so far: the position of the next byte. */
  private position = 0;
  private held: Buffer = EMPTY;
  private waitingDrain = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connection: Connection,
    readonly source: Socket,
    readonly destination: Socket,
    private readonly faults: LaneFaults,
  ) {
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.on('end', () => this.onEnd());
  }

  heldBytes(): number {
    return this.held.byteLength;
  }

  stop(): void {
    clearTimeout(this.idleTimer);
    this.source.pause();
  }

  private onData(chunk: Buffer): void {
    // A chunk read before a cut paused the source: it is past the cut.
    if (this.connection.stopped) return;
    const start = this.position;
    this.position += chunk.byteLength;
    const { cutAt, flipAt, holdLast } = this.faults;
    const cutHere = cutAt !== undefined && cutAt < this.position;
    let out = cutHere ? chunk.subarray(0, cutAt - start) : chunk;
    if (flipAt !== undefined && flipAt >= start && flipAt < start + out.byteLength) {
      out = Buffer.from(out);
      out[flipAt - start]! ^= 0xff;
      this.connection.counters.flips++;
    }
    if (cutHere) {
      // Bytes held back came before the cut: they go through too.
      this.send(this.held.byteLength > 0 ? Buffer.concat([this.held, out]) : out);
      this.held = EMPTY;
      this.connection.cut();
      return;
    }
    if (holdLast !== undefined && holdLast > 0) {
      const all = this.held.byteLength > 0 ? Buffer.concat([this.held, out]) : out;
      const keep = Math.min(holdLast, all.byteLength);
      // A copy, so that the held tail does not keep a whole 64 KiB chunk alive.
      this.held = Buffer.from(all.subarray(all.byteLength - keep));
      out = all.subarray(0, all.byteLength - keep);
    }
    this.send(out);
    this.armIdle();
  }

  private onEnd(): void {
    if (this.connection.stopped) return;
    if (this.faults.holdLast !== undefined) this.connection.cut();
    // A half-close travels like data, after what was written before it.
    else this.destination.end();
  }

  private send(bytes: Buffer): void {
    if (bytes.byteLength === 0 || this.destination.destroyed) return;
    // Already waiting: the source is paused and 'drain' will resume it.
    if (this.destination.write(bytes) || this.waitingDrain) return;
    this.source.pause();
    this.waitingDrain = true;
    this.destination.once('drain', () => {
      this.waitingDrain = false;
      if (this.connection.stopped) return;
      this.source.resume();
      this.armIdle();
    });
  }

  /** For `cutDownAtEnd`: the stream is over when the server stays silent this long (not while we hold it). */
  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.faults.holdLast === undefined || this.waitingDrain || !Number.isFinite(this.faults.idleMs))
      return;
    this.idleTimer = setTimeout(() => this.connection.cut(), this.faults.idleMs);
  }
}

/** A client connection, the proxy's connection to the target for it, and a lane each way. */
class Connection {
  stopped = false;
  private readonly lanes: readonly Lane[];

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    faults: ConnectionFaults,
    readonly counters: Counters,
    private readonly drainTimeoutMs: number,
    onGone: () => void,
  ) {
    const idleMs = faults.idleMs ?? DEFAULT_IDLE_MS;
    const endFault = faults.holdLastDownBytes ?? (faults.cutDownAtEnd ? 0 : undefined);
    this.lanes = [
      new Lane(this, client, upstream, {
        cutAt: faults.cutUpAt,
        flipAt: faults.flipUpAt,
        holdLast: undefined,
        idleMs,
      }),
      new Lane(this, upstream, client, {
        cutAt: faults.cutDownAt,
        flipAt: faults.flipDownAt,
        holdLast: endFault,
        idleMs,
      }),
    ];
    let open = 2;
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      // Listening to 'error' also keeps a peer's reset from crashing the test process.
      socket.on('error', () => this.abort());
      let ended = false;
      socket.on('end', () => {
        ended = true;
      });
      socket.on('close', (hadError) => {
        // Gone without a FIN first (a reset, a destroy): the other peer must see a reset as well.
        if (hadError || !ended) this.abort();
        if (--open === 0) onGone();
      });
    }
  }

  bufferedBytes(): number {
    let total = this.client.writableLength + this.upstream.writableLength;
    total += this.client.readableLength + this.upstream.readableLength;
    for (const lane of this.lanes) total += lane.heldBytes();
    return total;
  }

  /** A planned cut: stop forwarding now, reset both peers once what went through has reached them. */
  cut(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.counters.cuts++;
    for (const lane of this.lanes) lane.stop();
    void Promise.all([this.delivered(this.client), this.delivered(this.upstream)]).then(() => this.reset());
  }

  /** A peer went away or failed: the other one sees a reset at once. */
  abort(): void {
    // Also during a cut's wait for delivery: a peer that is gone has nothing more to receive.
    this.stopped = true;
    for (const lane of this.lanes) lane.stop();
    this.reset();
  }

  reset(): void {
    for (const socket of [this.client, this.upstream]) {
      if (socket.destroyed) continue;
      // Nothing to reset on a connection not made yet; resetAndDestroy() would wait for it to connect.
      if (socket.connecting || typeof socket.resetAndDestroy !== 'function') socket.destroy();
      else socket.resetAndDestroy();
    }
  }

  /**
   * Resolves once `socket` holds nothing unsent, neither in Node nor in the kernel (a reset discards both),
   * or after `drainTimeoutMs` when its peer stopped reading.
   */
  private async delivered(socket: Socket): Promise<void> {
    const deadline = Date.now() + this.drainTimeoutMs;
    while (!socket.destroyed && Date.now() < deadline) {
      if (socket.writableLength === 0 && !socket.connecting && (await tcpSendQueue(socket)) === 0) return;
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
  }
}

/**
 * Starts a proxy on 127.0.0.1 (a free port) in front of `target`. Each accepted connection opens its own
 * connection to the target and gets its faults from `plan`. Half-closes pass through (a FIN one way ends
 * that direction only); a reset from either peer is passed on as a reset.
 */
export async function startCuttingProxy(options: CuttingProxyOptions): Promise<CuttingProxy> {
  const { target, plan } = options;
  const drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  const counters: Counters = { cuts: 0, flips: 0 };
  const live = new Set<Connection>();
  let accepted = 0;

  const server = createServer({ allowHalfOpen: true }, (client) => {
    const index = accepted++;
    let faults: ConnectionFaults;
    try {
      faults = checkFaults(plan?.(index) ?? {});
    } catch (error) {
      client.destroy();
      throw error;
    }
    const upstream = createConnection({ host: target.host, port: target.port, allowHalfOpen: true });
    const connectTimer = setTimeout(
      () => upstream.destroy(new Error(`cutting proxy: no connection to ${target.host}:${target.port}`)),
      CONNECT_TIMEOUT_MS,
    );
    upstream.once('connect', () => clearTimeout(connectTimer));
    upstream.once('close', () => clearTimeout(connectTimer));
    const connection = new Connection(client, upstream, faults, counters, drainTimeoutMs, () =>
      live.delete(connection),
    );
    live.add(connection);
  });
  // A listening server only errors on odd conditions (fd exhaustion on accept): ignore rather than crash.
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as { port: number };

  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return accepted;
    },
    get cuts() {
      return counters.cuts;
    },
    get flips() {
      return counters.flips;
    },
    bufferedBytes() {
      let total = 0;
      for (const connection of live) total += connection.bufferedBytes();
      return total;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        // `server.close` calls back only once every connection is gone: destroy them right after.
        server.close(() => resolve());
        for (const connection of live) connection.abort();
      });
      return closing;
    },
  };
}
