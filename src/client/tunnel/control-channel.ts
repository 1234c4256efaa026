import { CONNECTION_ID, CONTROL_SLOTS, controlUrl } from '../../protocol/tunnel-layout.js';
import { GaveUpError, PeerAbortedError, RefusedError } from '../errors.js';
import { describe } from '../network-error.js';
import type { PlainSource } from '../plain-source.js';
import { receive } from '../receive.js';
import { send } from '../send.js';
import { plainDecoding, plainEncoding } from '../wire-format.js';
import type { TunnelSettings } from './tunnel-connection.js';

// The control channel (docs/tunnel-protocol.md): the exposing side keeps a GET waiting on each of the
// CONTROL_SLOTS slots; a connecting side sends one small JSON message, {"v":1,"id":"<connection id>"}, to a
// free slot (a busy one answers 409 at once, so it tries the next). The message carries no secret: an
// encrypted tunnel's streams are bound to their connection id, and a stranger's id leads nowhere.

/** Most bytes of a control message (it is a few dozen). */
const MAX_MESSAGE_BYTES = 1024;
const VERSION = 1;

/** A new random connection id. */
export function newConnectionId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) =>
    byte.toString(16).padStart(2, '0'),
  ).join('');
}

/** The message announcing connection `id`. */
export function controlMessage(id: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ v: VERSION, id }));
}

/** The connection id a control message announces, or undefined for anything else. */
export function announcedId(bytes: Uint8Array): string | undefined {
  try {
    const message = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown;
    if (typeof message !== 'object' || message === null) return undefined;
    const { v, id } = message as { v?: unknown; id?: unknown };
    return v === VERSION && typeof id === 'string' && CONNECTION_ID.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

function bytesSource(bytes: Uint8Array): PlainSource {
  return {
    length: bytes.byteLength,
    from: (offset) =>
      new ReadableStream({
        start: (controller) => {
          controller.enqueue(bytes.slice(offset));
          controller.close();
        },
      }),
  };
}

/**
 * Announces connection `id` to the exposing side: sends its message to a free control slot, starting at a
 * random one. Tries until `signal` aborts (the connection gives up when no answer comes).
 * @throws RefusedError for a refusal other than a busy slot (a credential the server does not accept)
 */
export async function announce(settings: TunnelSettings, id: string, signal: AbortSignal): Promise<void> {
  const { transport, probe, namespace } = settings;
  const random = transport.random ?? Math.random;
  const message = controlMessage(id);
  let slot = Math.floor(random() * CONTROL_SLOTS);
  for (let tries = 1; ; tries++) {
    signal.throwIfAborted();
    try {
      await send({
        ...transport,
        url: controlUrl(namespace, slot),
        source: bytesSource(message),
        encoding: plainEncoding,
        stallMs: 0,
        knownProbe: probe,
        declareResumable: false,
        signal,
      });
      return;
    } catch (error) {
      signal.throwIfAborted();
      if (error instanceof RefusedError && error.status === 409) {
        // Another connect is on this slot: the next one, and after a round of busy slots a short pause.
        slot = (slot + 1) % CONTROL_SLOTS;
        if (tries % CONTROL_SLOTS === 0) await transport.clock.sleep(5 + random() * 45, signal);
        continue;
      }
      // The slot's GET went away under the message (the exposing side renews its GETs): send it again.
      if (error instanceof GaveUpError || error instanceof PeerAbortedError) {
        await transport.clock.sleep(50 + random() * 200, signal);
        continue;
      }
      throw error;
    }
  }
}

/** What a control slot's listener tells the exposing side. */
export interface SlotListener {
  /** A connection was announced (the same id may come twice: the caller drops repeats). */
  onAnnounce(id: string): void;
  /** A GET is waiting on the slot (again). */
  onWaiting(): void;
  /** The broker could not be reached or refused; the listener tries again in `inMs`. */
  onRetry(reason: string, inMs: number): void;
}

/**
 * Keeps a GET waiting on control slot `slot` until `signal` aborts, and hands on every message. The GET is
 * renewed every `heartbeatMs` while nothing arrives: a NAT forgets an idle connection, and a broker that
 * went away is noticed by the next request instead of never.
 */
export async function listenOnSlot(
  settings: TunnelSettings,
  slot: number,
  listener: SlotListener,
  signal: AbortSignal,
): Promise<void> {
  const { transport, probe, namespace, heartbeatMs } = settings;
  let busyInARow = 0;
  while (!signal.aborted) {
    const round = new AbortController();
    const onAbort = () => round.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let arriving = false;
    const renew = setTimeout(() => {
      if (!arriving) round.abort(new Error('renewing the control GET'));
    }, heartbeatMs);
    const parts: Uint8Array[] = [];
    let size = 0;
    try {
      await receive({
        ...transport,
        // Never give up: the exposing side waits for the broker as long as it runs.
        retry: { ...transport.retry, budgetMs: 0 },
        url: controlUrl(namespace, slot),
        stallMs: 0,
        knownProbe: probe,
        // A message lost with a renewed GET is sent again, and a dropped GET must free its slot at once.
        declareResumable: false,
        signal: round.signal,
        onEvent: (event) => {
          if (event.type === 'waiting') listener.onWaiting();
          if (event.type === 'retrying') listener.onRetry(event.reason, event.inMs);
        },
        begin: async () => {
          arriving = true;
          return {
            decoding: plainDecoding,
            sink: {
              write: async (chunk) => {
                size += chunk.byteLength;
                if (size > MAX_MESSAGE_BYTES)
                  throw new Error(`a control message over ${MAX_MESSAGE_BYTES} bytes`);
                parts.push(chunk);
              },
            },
          };
        },
      });
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const part of parts) {
        bytes.set(part, at);
        at += part.byteLength;
      }
      busyInARow = 0;
      const id = announcedId(bytes);
      if (id) listener.onAnnounce(id);
    } catch (error) {
      if (signal.aborted) return;
      if (round.signal.aborted && !arriving) continue;
      if (error instanceof RefusedError && error.status === 409) {
        // The slot's last message has been read, but its transfer is not yet marked ended on the broker
        // (on Redis the sender settles it a moment later): the slot is free again in a few milliseconds.
        // Each 409 costs a token of the client's rate limit, so the pauses grow (10 ms doubling to 80).
        busyInARow += 1;
        const pauseMs = 10 * 2 ** Math.min(busyInARow - 1, 3);
        await transport.clock.sleep(pauseMs * (0.5 + Math.random()), signal).catch(() => {});
        continue;
      }
      // A credential refused for this namespace will not be accepted by asking again: final.
      if (error instanceof RefusedError && (error.status === 401 || error.status === 403)) throw error;
      // Anything else (a broken message, a refusal that may pass): said, then tried again later.
      const inMs = 1000 + Math.random() * 1000;
      listener.onRetry(describe(error), inMs);
      await transport.clock.sleep(inMs, signal).catch(() => {});
    } finally {
      clearTimeout(renew);
      signal.removeEventListener('abort', onAbort);
    }
  }
}
