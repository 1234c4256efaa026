import type { ByteSource } from './byte-source.js';
import type { Clock } from './clock.js';

/** An upload grew past `limits.maxBodyBytes`. */
export class BodyTooLargeError extends Error {
  readonly code = 'BODY_TOO_LARGE';
  override name = 'BodyTooLargeError';
  constructor(readonly maxBytes: number) {
    super(`The body is larger than the ${maxBytes} bytes this server accepts.`);
  }
}

/** A client that sent, or took, nothing for `limits.idleTimeoutMs`. */
export class ClientIdleError extends Error {
  readonly code = 'CLIENT_IDLE';
  override name = 'ClientIdleError';
}

/** A ByteSource watched: `done` settles when it ended, failed or was cancelled. */
export function watchedSource(source: ByteSource): { source: ByteSource; done: Promise<void> } {
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return {
    done,
    source: {
      read: () =>
        source.read().then(
          (chunk) => {
            if (chunk === null) finish();
            return chunk;
          },
          (error: unknown) => {
            finish();
            throw error;
          },
        ),
      cancel: (reason) => {
        finish();
        source.cancel(reason);
      },
      ...(source.abandoned && { abandoned: source.abandoned }),
    },
  };
}

export interface UploadLimits {
  readonly clock: Clock;
  /** A read that waits this long for the client fails (0: no limit). */
  readonly idleMs: number;
  /** More bytes than this fail the read that crosses it. */
  readonly maxBytes?: number | undefined;
}

/**
 * One timer for a source's whole life instead of one per read (a read is a chunk: tens of thousands per
 * GiB). `due` is when the guard should act, `undefined` when nothing is being waited for; the timer fires
 * at the earliest due time it was armed for and re-arms itself while the due time moved on.
 */
class Watchdog {
  private due: number | undefined;
  private firesAt: number | undefined;
  private cancelTimer: (() => void) | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly onDue: () => void,
  ) {}

  /** Act at `at` unless told otherwise before. */
  setDue(at: number): void {
    this.due = at;
    if (this.firesAt !== undefined && this.firesAt <= at) return;
    this.cancelTimer?.();
    this.arm(at);
  }

  clear(): void {
    this.due = undefined;
  }

  stop(): void {
    this.due = undefined;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.firesAt = undefined;
  }

  private arm(at: number): void {
    this.firesAt = at;
    this.cancelTimer = this.clock.setTimeout(() => this.fire(), Math.max(0, at - this.clock.now()));
  }

  private fire(): void {
    this.cancelTimer = undefined;
    this.firesAt = undefined;
    if (this.due === undefined) return;
    if (this.due > this.clock.now()) this.arm(this.due);
    else {
      this.due = undefined;
      this.onDue();
    }
  }
}

/**
 * A request body held to the upload limits: a read that gets nothing from the client within `idleMs` fails
 * with `ClientIdleError`, a body past `maxBytes` with `BodyTooLargeError`. Either way the underlying body
 * is cancelled, which lets the runtime close the connection.
 */
export function limitedUpload(source: ByteSource, limits: UploadLimits): ByteSource {
  let total = 0;
  const { clock, idleMs, maxBytes } = limits;
  let failPending: ((error: Error) => void) | undefined;
  const watchdog = new Watchdog(clock, () => {
    source.cancel();
    failPending?.(new ClientIdleError(`The upload sent nothing for ${Math.round(idleMs / 1000)} s.`));
  });
  const counted = (chunk: Uint8Array | null) => {
    if (chunk === null) return null;
    total += chunk.byteLength;
    if (maxBytes !== undefined && total > maxBytes) {
      source.cancel();
      throw new BodyTooLargeError(maxBytes);
    }
    return chunk;
  };
  if (idleMs === 0) {
    return { read: () => source.read().then(counted), cancel: (reason) => source.cancel(reason) };
  }
  return {
    read() {
      return new Promise<Uint8Array | null>((resolve, reject) => {
        failPending = reject;
        watchdog.setDue(clock.now() + idleMs);
        source.read().then(
          (chunk) => {
            if (chunk === null) watchdog.stop();
            else watchdog.clear();
            try {
              resolve(counted(chunk));
            } catch (error) {
              watchdog.stop();
              reject(error);
            }
          },
          (error) => {
            watchdog.stop();
            reject(error);
          },
        );
      });
    },
    cancel: (reason) => {
      watchdog.stop();
      source.cancel(reason);
    },
  };
}

/**
 * A response body whose client must keep taking it: once a chunk is handed out, the next read must come
 * within `idleMs` plus a millisecond per byte of that chunk (the consumer reads again only when the client
 * has taken the last one, so a slow link gets the time a ~1 KB/s client needs for the chunk). A client that
 * stalls longer is given up: the source is cancelled (for a pipe: this receiver leaves, the others go on)
 * and `abandoned` tells the transport to cut the connection. Time spent waiting for bytes does not count.
 */
export function stallGuarded(source: ByteSource, clock: Clock, idleMs: number): ByteSource {
  if (idleMs === 0) return source;
  let giveUp: (error: Error) => void = () => {};
  const abandoned = new Promise<Error>((resolve) => {
    giveUp = resolve;
  });
  let gone = false;
  const watchdog = new Watchdog(clock, () => {
    gone = true;
    source.cancel();
    giveUp(new ClientIdleError(`The client took nothing for ${Math.round(idleMs / 1000)} s.`));
  });
  return {
    read() {
      watchdog.clear();
      return source.read().then((chunk) => {
        if (chunk === null) watchdog.stop();
        else if (!gone) watchdog.setDue(clock.now() + idleMs + chunk.byteLength);
        return chunk;
      });
    },
    cancel: (reason) => {
      watchdog.stop();
      gone = true;
      source.cancel(reason);
    },
    abandoned,
  };
}
