import type { Clock } from '../clock.js';
import type { PerClientLimits } from './access-config.js';

/** What one client holds: a token bucket of requests and its open pipe requests. */
interface ClientState {
  tokens: number;
  refilledAt: number;
  pipes: number;
  waiting: number;
}

/** A refusal for the 429 answer: why, and when to try again (seconds, for `Retry-After`). */
export interface LimitRefusal {
  readonly reason: string;
  readonly retryAfterSeconds: number;
}

/** A pipe request's hold on its client's counts; `transferring` and `release` are idempotent. */
export interface ClientSlot {
  /** The peer came: the request stops counting as waiting. */
  transferring(): void;
  /** The request ended. */
  release(): void;
}

/**
 * Per-client limits of one instance: a token bucket of requests (rate and burst) and caps on open and
 * waiting pipe requests. Written here rather than taken from a rate-limit library because it needs the
 * injected clock (tests run in milliseconds) and a hard bound on the clients it remembers: at `maxTracked`
 * the least recently seen client holding nothing is forgotten (its bucket would have refilled anyway).
 */
export class ClientLimits {
  private readonly clients = new Map<string, ClientState>();

  constructor(
    private readonly limits: PerClientLimits,
    private readonly clock: Clock,
  ) {}

  /** Takes one request from `client`'s bucket; a refusal when it is empty. */
  admitRequest(client: string): LimitRefusal | undefined {
    const { requestsPerSecond, burst } = this.limits;
    if (requestsPerSecond === 0) return undefined;
    const state = this.stateOf(client);
    const now = this.clock.now();
    state.tokens = Math.min(burst, state.tokens + ((now - state.refilledAt) / 1000) * requestsPerSecond);
    state.refilledAt = now;
    if (state.tokens < 1) {
      return {
        reason: `Too many requests from ${client}: at most ${requestsPerSecond} per second (burst ${burst}).`,
        retryAfterSeconds: Math.max(1, Math.ceil((1 - state.tokens) / requestsPerSecond)),
      };
    }
    state.tokens -= 1;
    return undefined;
  }

  /** Opens a pipe request for `client`, counted as waiting until `transferring()`; a refusal at a cap. */
  openPipe(client: string): ClientSlot | LimitRefusal {
    const state = this.stateOf(client);
    if (state.pipes >= this.limits.maxPipes) {
      return {
        reason: `${client} has ${state.pipes} pipe requests open; at most ${this.limits.maxPipes}.`,
        retryAfterSeconds: 1,
      };
    }
    if (state.waiting >= this.limits.maxWaiting) {
      return {
        reason: `${client} has ${state.waiting} requests waiting for a peer; at most ${this.limits.maxWaiting}.`,
        retryAfterSeconds: 1,
      };
    }
    state.pipes += 1;
    state.waiting += 1;
    let waiting = true;
    let open = true;
    const stopWaiting = () => {
      if (!waiting) return;
      waiting = false;
      state.waiting -= 1;
    };
    return {
      transferring: stopWaiting,
      release: () => {
        if (!open) return;
        open = false;
        stopWaiting();
        state.pipes -= 1;
      },
    };
  }

  /** The state of `client`, now the most recently seen; forgets idle clients beyond `maxTracked`. */
  private stateOf(client: string): ClientState {
    let state = this.clients.get(client);
    if (state) {
      this.clients.delete(client);
    } else {
      state = { tokens: this.limits.burst, refilledAt: this.clock.now(), pipes: 0, waiting: 0 };
      this.evictIdle();
    }
    this.clients.set(client, state);
    return state;
  }

  private evictIdle(): void {
    if (this.clients.size < this.limits.maxTracked) return;
    // Map order is least recently seen first; clients with open pipes are kept (their counts matter), and
    // those are bounded by the broker's own caps.
    let scanned = 0;
    for (const [client, state] of this.clients) {
      if (state.pipes === 0) {
        this.clients.delete(client);
        return;
      }
      if (++scanned > 1000) return;
    }
  }
}

/** Whether `openPipe` refused. */
export function isRefusal(slot: ClientSlot | LimitRefusal): slot is LimitRefusal {
  return 'reason' in slot;
}
