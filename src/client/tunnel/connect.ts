import { RefusedError } from '../errors.js';
import { announce, newConnectionId } from './control-channel.js';
import type { LocalConnection } from './local-connection.js';
import { type ConnectionEnd, carryConnection, type TunnelSettings } from './tunnel-connection.js';

/** The first wait for OPEN before the announcement goes out again; it doubles up to the heartbeat. */
const REANNOUNCE_AFTER_MS = 2000;

/**
 * Carries one accepted local connection to the exposing side: announces it on the control channel while
 * its two pipes open (the bytes start moving as soon as the exposing side has dialled the service), and
 * carries it until it ends. An announcement can be lost without its sender hearing of it (the exposing
 * side renewed that GET just as it arrived): without an answer it goes out again (the exposing side drops
 * repeats). A refusal of the announcement (a credential not accepted) resets the connection.
 */
export async function connectOne(settings: TunnelSettings, local: LocalConnection): Promise<ConnectionEnd> {
  const id = newConnectionId();
  const controller = new AbortController();
  let opened = false;
  const carried = carryConnection(
    settings,
    id,
    { role: 'connect', connection: local, onOpened: () => (opened = true) },
    controller.signal,
  );
  void (async () => {
    let waitMs = REANNOUNCE_AFTER_MS;
    while (!opened && !controller.signal.aborted) {
      announce(settings, id, controller.signal).catch((error: unknown) => {
        if (error instanceof RefusedError) controller.abort(error);
      });
      await settings.transport.clock.sleep(waitMs, controller.signal).catch(() => {});
      waitMs = Math.min(2 * waitMs, Math.max(REANNOUNCE_AFTER_MS, settings.heartbeatMs));
    }
  })();
  const end = await carried;
  controller.abort(new Error('the connection ended'));
  return end;
}
