/**
 * One end of a tunnelled connection on this host, as the tunnel core sees it: a TCP or Unix socket, or
 * stdin/stdout for `connect --stdio`. The CLI wraps a `net.Socket`; the core never touches one.
 */
export interface LocalConnection {
  /** What the local side sends: ends when it half-closes (FIN), errors when it resets. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Writes bytes to the local side; resolves once it took them (its buffer drained). */
  write(chunk: Uint8Array): Promise<void>;
  /** Half-closes: the local side reads an end, and may still send. */
  end(): void;
  /** Resets the connection (TCP RST where the socket can, otherwise a close). */
  reset(reason: string): void;
}

/** Dials the service: a local connection, or a reason it could not be had (refused, unreachable). */
export type Dialer = () => Promise<LocalConnection>;
