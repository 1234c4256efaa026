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

/** A pipe request's hold on its client's counts; every method is idempotent. */
export interface ClientSlot {
  /** The peer came: the request stops counting as waiting. */
  transferring(): void;
  /** Its transfer completed (the sender sent all, or the receiver got all): the request costs nothing. */
  completed(): void;
  /** The request ended; unless it completed a transfer, it is charged to its client's bucket now. */
  release(): void;
}

/**
 * Per-client limits of one instance: a token bucket of requests (rate and burst) and caps on open and
 * waiting pipe requests. Written here rather than taken from a rate-limit library because it needs the
 * injected clock (tests run in milliseconds) and a hard bound on the clients it remembers: at `maxTracked`
 * the least recently seen client holding nothing is forgotten (its bucket would have refilled anyway).
 *
 * What the bucket charges (issue 11, item 2): what costs the server is waiting and failing, not a transfer
 * that completes, so a client running transfers back to back (a shell loop of curl pairs, a fleet of
 * devices behind one NAT address) is never refused for that. A pipe request (GET, PUT or POST on a pipe)
 * needs a token to be let in but is charged only when it ends without completing a transfer: refused,
 * unmatched until it timed out or left, cut, or failed. Every other request (pages, HEAD, internal
 * endpoints, and anything refused before it reaches a pipe) is charged on arrival. What a client holds at
 * once is bounded by the caps (`maxPipes`, `maxWaiting`), not by the bucket; the bucket bounds how fast it
 * can fail, so a flood of refused, unmatched or cheap requests meets 429 after `burst` of them.
 */
export class ClientLimits {
  private readonly clients = new Map<string, ClientState>();

  constructor(
    private readonly limits: PerClientLimits,
    private readonly clock: Clock,
  ) {}

  /**
   * Lets a request of `client` in while its bucket holds a token, a refusal when it is empty. `charge`
   * takes the token now; a pipe request passes `false` and is charged when it ends (see `openPipe`).
   */
  admitRequest(client: string, charge = true): LimitRefusal | undefined {
    const { requestsPerSecond, burst } = this.limits;
    if (requestsPerSecond === 0) return undefined;
    const state = this.refilled(client);
    if (state.tokens < 1) {
      return {
        reason: `Too many requests from ${client}: at most ${requestsPerSecond} per second (burst ${burst}).`,
        retryAfterSeconds: Math.max(1, Math.ceil((1 - state.tokens) / requestsPerSecond)),
      };
    }
    if (charge) state.tokens -= 1;
    return undefined;
  }

  /**
   * Charges `client` one request after the fact: a pipe request that failed. The bucket does not go below
   * empty: what a client can have in flight uncharged is bounded by `maxPipes`, and a debt would only
   * stretch its wait past the `Retry-After` it was told.
   */
  charge(client: string): void {
    if (this.limits.requestsPerSecond === 0) return;
    const state = this.refilled(client);
    state.tokens = Math.max(0, state.tokens - 1);
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
    let completed = false;
    const stopWaiting = () => {
      if (!waiting) return;
      waiting = false;
      state.waiting -= 1;
    };
    return {
      transferring: stopWaiting,
      completed: () => {
        completed = open;
      },
      release: () => {
        if (!open) return;
        open = false;
        stopWaiting();
        state.pipes -= 1;
        if (!completed) this.charge(client);
      },
    };
  }

  /** The state of `client` with its bucket refilled for the time since it was last looked at. */
  private refilled(client: string): ClientState {
    const { requestsPerSecond, burst } = this.limits;
    const state = this.stateOf(client);
    const now = this.clock.now();
    state.tokens = Math.min(burst, state.tokens + ((now - state.refilledAt) / 1000) * requestsPerSecond);
    state.refilledAt = now;
    return state;
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
