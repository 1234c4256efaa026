import { CONTROL_SLOTS } from '../../protocol/tunnel-layout.js';
import { listenOnSlot } from './control-channel.js';
import type { Dialer } from './local-connection.js';
import { type ConnectionEnd, carryConnection, type TunnelSettings } from './tunnel-connection.js';

/** What `expose` needs beyond the tunnel's settings. */
export interface ExposeOptions extends TunnelSettings {
  /** Dials the service for each announced connection. */
  readonly dial: Dialer;
  /** Connections carried at once at most; one more is reset at once (every resource has a bound). */
  readonly maxConnections: number;
  /** Stops listening and ends every connection. */
  readonly signal: AbortSignal;
}

/** Connection ids remembered to drop a repeated announcement (a message sent again after a break). */
const REMEMBERED_IDS = 10_000;

/**
 * Keeps the service reachable through the broker until `signal` aborts: a GET waits on every control slot,
 * renewed every heartbeat and re-established with backoff after any break (a broker restart, a network
 * loss), and each announced connection is carried over its own pair of pipes.
 */
export async function expose(options: ExposeOptions): Promise<void> {
  const seen = new Set<string>();
  const active = new Map<string, { carried: Promise<ConnectionEnd>; cancel: AbortController }>();
  // One canceller per slot and per connection, all aborted from one listener: a listener each on one shared
  // signal would pile up (and Node warns past ten).
  const slots = Array.from({ length: CONTROL_SLOTS }, () => new AbortController());
  const onAbort = () => {
    for (const slot of slots) slot.abort(options.signal.reason);
    for (const { cancel } of active.values()) cancel.abort(options.signal.reason);
  };
  options.signal.addEventListener('abort', onAbort, { once: true });
  let reconnects = 0;
  let broken = false;
  let waiting = 0;
  const onAnnounce = (id: string) => {
    if (seen.has(id)) return;
    seen.add(id);
    if (seen.size > REMEMBERED_IDS) seen.delete(seen.values().next().value!);
    const full = active.size >= options.maxConnections;
    const dial: Dialer = full
      ? () =>
          Promise.reject(
            new Error(`the exposing side carries its maximum of ${options.maxConnections} connections`),
          )
      : options.dial;
    const cancel = new AbortController();
    const carried = carryConnection(options, id, { role: 'expose', dial }, cancel.signal);
    active.set(id, { carried, cancel });
    void carried.finally(() => active.delete(id));
  };
  const listening = Promise.all(
    Array.from({ length: CONTROL_SLOTS }, (_, slot) =>
      listenOnSlot(
        options,
        slot,
        {
          onAnnounce,
          onWaiting: () => {
            // Said once when all slots first wait, and once each time they wait again after a break.
            if (broken) {
              broken = false;
              reconnects += 1;
              options.onEvent?.({ type: 'listening', reconnects });
            } else if (waiting < CONTROL_SLOTS) {
              waiting += 1;
              if (waiting === CONTROL_SLOTS) options.onEvent?.({ type: 'listening', reconnects });
            }
          },
          onRetry: (reason, inMs) => {
            broken = true;
            options.onEvent?.({ type: 'retrying', reason, inMs });
          },
        },
        slots[slot]!.signal,
      ),
    ),
  );
  try {
    await listening;
  } catch (error) {
    // A slot whose credential is refused ends the tunnel: the others are stopped, the reason thrown.
    onAbort();
    throw error;
  } finally {
    options.signal.removeEventListener('abort', onAbort);
  }
  await Promise.allSettled([...active.values()].map(({ carried }) => carried));
}
