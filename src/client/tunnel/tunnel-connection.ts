import { connectionUrl, type TunnelDirection } from '../../protocol/tunnel-layout.js';
import { PeerAbortedError } from '../errors.js';
import { describe } from '../network-error.js';
import type { PipeProbe } from '../pipe-probe.js';
import { ReplayBuffer } from '../plain-source.js';
import { receive } from '../receive.js';
import { send } from '../send.js';
import type { TransferOptions } from '../transfer-options.js';
import { plainDecoding, plainEncoding } from '../wire-format.js';
import type { Dialer, LocalConnection } from './local-connection.js';
import { RecordReader } from './record-reader.js';
import { RecordWriter } from './record-writer.js';
import type { TunnelEvent } from './tunnel-events.js';
import type { TunnelKeys } from './tunnel-keys.js';
import { RecordType, TunnelProtocolError } from './tunnel-records.js';
import { startStream } from './tunnel-stream-header.js';

/** How a tunnel reaches the broker: the transfer options every pipe of it shares. */
export type TunnelTransport = Pick<TransferOptions, 'headers' | 'fetch' | 'retry' | 'clock' | 'random'>;

/** What every connection of one tunnel shares. */
export interface TunnelSettings {
  /** The tunnel's namespace (`N`), any signature in its query. */
  readonly namespace: URL;
  readonly transport: TunnelTransport;
  /** What `HEAD` said of the server once: each pipe skips its own. */
  readonly probe: PipeProbe;
  /** Set when the tunnel is encrypted. */
  readonly keys: TunnelKeys | undefined;
  /** A record goes out at least this often; a peer silent for twice as long is dead. */
  readonly heartbeatMs: number;
  /** Bytes of each outgoing stream kept for a resume (on a server that resumes). */
  readonly replayBytes: number;
  readonly onEvent?: (event: TunnelEvent) => void;
}

/** The connecting side of a connection: its accepted socket, and who wants to hear that it opened. */
export interface ConnectingSide {
  readonly role: 'connect';
  readonly connection: LocalConnection;
  readonly onOpened?: () => void;
}

/** How a connection ended. */
export interface ConnectionEnd {
  readonly how: 'closed' | 'reset' | 'refused' | 'failed';
  readonly reason: string;
  /** Bytes read from the local side and sent, and received and written to it. */
  readonly sent: number;
  readonly received: number;
}

/**
 * The least time a connection has to open (the exposing side's OPEN), whatever the heartbeat: a burst of
 * connections on a loaded machine takes seconds to set up, and that is not a dead peer.
 */
const MIN_SETUP_MS = 10_000;

/** Bytes an outgoing stream holds before the local socket is read no further. */
const OUTGOING_HIGH_WATER = 256 * 1024;

/**
 * Carries one connection over its pair of pipes until both directions ended (FIN each way), one side reset,
 * or the peer fell silent: the connecting side with its accepted `local` socket, the exposing side with a
 * `dial` of the service (its first record says whether the service took the connection).
 */
export function carryConnection(
  settings: TunnelSettings,
  id: string,
  local: ConnectingSide | { readonly role: 'expose'; readonly dial: Dialer },
  /** Ends the connection from outside (its reason is the reset's). */
  signal?: AbortSignal,
): Promise<ConnectionEnd> {
  const carrier = new Carrier(settings, id, local);
  signal?.addEventListener('abort', () => carrier.cancel(signal.reason), { once: true });
  return carrier.run();
}

class Carrier {
  private readonly abort = new AbortController();
  private readonly startedAt: number;
  private lastHeard: number;
  private writingLocally = false;
  private repairing = false;
  private opened = false;
  private local: LocalConnection | undefined;
  private localReady: Promise<LocalConnection | undefined>;
  /** Set once the stream's keys are made (a connection cancelled before then has none: see `fail`). */
  private writer!: RecordWriter;
  private reader!: RecordReader;
  private sentDone = false;
  private receivedDone = false;
  private ended: ConnectionEnd | undefined;
  private resolveEnd!: (end: ConnectionEnd) => void;
  private sent = 0;
  private received = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private sending: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly settings: TunnelSettings,
    private readonly id: string,
    private readonly side: ConnectingSide | { readonly role: 'expose'; readonly dial: Dialer },
  ) {
    this.startedAt = settings.transport.clock.now();
    this.lastHeard = this.startedAt;
    this.localReady = Promise.resolve(side.role === 'connect' ? side.connection : undefined);
    if (side.role === 'connect') this.local = side.connection;
  }

  async run(): Promise<ConnectionEnd> {
    const { settings, id } = this;
    const { transport, keys, probe, namespace } = settings;
    const ended = new Promise<ConnectionEnd>((resolve) => {
      this.resolveEnd = resolve;
    });
    const outgoing: TunnelDirection = this.side.role === 'connect' ? 'up' : 'down';
    const incoming: TunnelDirection = outgoing === 'up' ? 'down' : 'up';
    const start = await startStream(keys, id, outgoing);
    // Cancelled while the stream's keys were made (the exposing side stopping): nothing was opened.
    if (this.ended) return ended;
    this.writer = new RecordWriter(start, OUTGOING_HIGH_WATER, transport.clock);
    this.reader = new RecordReader(keys, id, incoming, (type, payload) => this.onRecord(type, payload));
    const base = {
      ...transport,
      stallMs: 0,
      knownProbe: probe,
      signal: this.abort.signal,
    };
    this.sending = send({
      ...base,
      url: connectionUrl(namespace, id, outgoing),
      // A server that cannot resume still has the sender start over when a break comes before the
      // transfer began: what went out until then must be at hand (a MiB: the writer's queue and the sockets').
      source: new ReplayBuffer(
        this.writer.readable,
        probe.resumable ? settings.replayBytes : Math.min(settings.replayBytes, 1024 * 1024),
      ),
      encoding: plainEncoding,
    }).then(
      () => {
        this.sentDone = true;
        this.settleIfDone();
      },
      (error) => {
        // The peer dropped our stream: its own stream, still arriving, may say why (an RST, or a header
        // that does not verify under our key), which is the reason worth reporting. A moment for it.
        if (error instanceof PeerAbortedError && !this.reader.done) {
          const grace = Math.max(2000, this.settings.heartbeatMs);
          void transport.clock
            .sleep(grace, this.abort.signal)
            .then(() => this.fail(error))
            .catch(() => {});
          return;
        }
        this.fail(error);
      },
    );
    receive({
      ...base,
      // While the incoming pipe is being repaired (a broken connection, a resume on another instance), the
      // silence is the broker's, not the peer's: the watchdog waits, and the retry budget bounds it.
      onEvent: (event) => {
        if (event.type === 'retrying') this.repairing = true;
        if (event.type === 'resumed') {
          this.repairing = false;
          this.lastHeard = transport.clock.now();
        }
      },
      url: connectionUrl(namespace, id, incoming),
      begin: async () => ({ sink: { write: (chunk) => this.reader.push(chunk) }, decoding: plainDecoding }),
    }).then(
      () => {
        if (!this.reader.done) {
          this.fail(new Error("the peer's stream ended without its last record"));
          return;
        }
        this.receivedDone = true;
        this.settleIfDone();
      },
      (error) => this.fail(error),
    );
    const beat = Math.max(25, Math.floor(settings.heartbeatMs / 4));
    this.timer = setInterval(() => this.beat(), beat);
    if (this.side.role === 'connect') void this.pump(this.side.connection);
    else void this.dial(this.side.dial);
    return ended;
  }

  /** The exposing side: dial the service, say how that went, then carry its bytes. */
  private async dial(dial: Dialer): Promise<void> {
    const dialing = dial();
    this.localReady = dialing.catch(() => undefined);
    let local: LocalConnection;
    try {
      local = await dialing;
    } catch (error) {
      const reason = `the service refused the connection: ${describe(error)}`;
      await this.writer.write(RecordType.reset, new TextEncoder().encode(reason)).catch(() => {});
      this.endAfterLastRecord('refused', reason);
      return;
    }
    if (this.ended) {
      local.reset('the tunnel connection ended while the service was dialled');
      return;
    }
    this.local = local;
    this.opened = true;
    await this.writer.write(RecordType.open).catch(() => {});
    this.settings.onEvent?.({
      type: 'opened',
      id: this.id,
      setupMs: this.settings.transport.clock.now() - this.startedAt,
    });
    await this.pump(local);
  }

  /** Local bytes to the outgoing pipe, then FIN; a local reset goes out as RST. */
  private async pump(local: LocalConnection): Promise<void> {
    const reader = local.readable.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.sent += value.byteLength;
        await this.writer.write(RecordType.data, value);
      }
      await this.writer.write(RecordType.fin);
      this.settleIfDone();
    } catch (error) {
      if (this.ended || this.writer.done) return;
      const reason = `reset on the ${this.side.role === 'connect' ? 'connecting' : 'service'} side: ${describe(error)}`;
      await this.writer.write(RecordType.reset, new TextEncoder().encode(reason)).catch(() => {});
      this.endAfterLastRecord('reset', reason);
    }
  }

  private async onRecord(type: RecordType, payload: Uint8Array): Promise<void> {
    this.lastHeard = this.settings.transport.clock.now();
    switch (type) {
      case RecordType.open:
        if (this.side.role !== 'connect' || this.opened)
          throw new TunnelProtocolError('the peer opened twice');
        this.opened = true;
        this.side.onOpened?.();
        this.settings.onEvent?.({ type: 'opened', id: this.id, setupMs: this.lastHeard - this.startedAt });
        return;
      case RecordType.data: {
        if (!this.opened && this.side.role === 'connect')
          throw new TunnelProtocolError('the peer sent bytes before it opened');
        const local = await this.localReady;
        if (!local) return;
        this.writingLocally = true;
        try {
          await local.write(payload);
        } finally {
          this.writingLocally = false;
          this.lastHeard = this.settings.transport.clock.now();
        }
        this.received += payload.byteLength;
        return;
      }
      case RecordType.fin:
        (await this.localReady)?.end();
        return;
      case RecordType.reset: {
        const reason = new TextDecoder().decode(payload);
        const refused = !this.opened && this.side.role === 'connect';
        (await this.localReady)?.reset(reason);
        this.writer.abandon(new Error(reason));
        this.finish(refused ? 'refused' : 'reset', reason);
        return;
      }
      case RecordType.ping:
        return;
    }
  }

  /** Heartbeat: fill a silence on the way out; notice a silence on the way in. */
  private beat(): void {
    const { heartbeatMs, transport } = this.settings;
    const now = transport.clock.now();
    if (!this.writer.done && !this.writer.busy && now - this.writer.lastWriteAt >= heartbeatMs) {
      this.writer.write(RecordType.ping).catch(() => {});
    }
    if (
      !this.reader.done &&
      !this.writingLocally &&
      !this.repairing &&
      now - this.lastHeard > (this.opened ? 2 * heartbeatMs : Math.max(2 * heartbeatMs, MIN_SETUP_MS))
    ) {
      const silentS = ((now - this.lastHeard) / 1000).toFixed(1);
      this.fail(
        new Error(
          this.opened
            ? `the peer fell silent (nothing for ${silentS} s, heartbeat ${heartbeatMs / 1000} s)`
            : `no answer from the exposing side within ${silentS} s (is edgepipe expose running?)`,
        ),
      );
    }
  }

  /** After this side's last record (RST) went out: give the peer a moment to read it, then end. */
  private endAfterLastRecord(how: ConnectionEnd['how'], reason: string): void {
    const grace = this.settings.transport.clock.sleep(2 * this.settings.heartbeatMs, this.abort.signal);
    void Promise.race([this.sending, grace])
      .catch(() => {})
      .then(() => {
        this.local?.reset(reason);
        this.finish(how, reason);
      });
  }

  /** Ends the connection from outside: the local side is reset, the pipes dropped. */
  cancel(reason: unknown): void {
    this.fail(reason);
  }

  private settleIfDone(): void {
    if (this.sentDone && this.receivedDone && this.writer.done) this.finish('closed', 'both sides closed');
  }

  private fail(error: unknown): void {
    if (this.ended) return;
    const reason = describe(error);
    // Cancelled before its stream existed: nothing to reset or drop yet.
    if (this.writer === undefined) {
      this.finish('failed', reason);
      return;
    }
    if (error instanceof TunnelProtocolError && !this.writer.done) {
      // The peer's stream is wrong (another key, a forgery): the RST tells it why, and our own stream's
      // header, which it checks too, tells it the same in its words; both ends then say the real cause.
      this.writer.write(RecordType.reset, new TextEncoder().encode(reason)).catch(() => {});
      this.endAfterLastRecord('failed', reason);
      return;
    }
    this.local?.reset(reason);
    this.writer.abandon(error);
    this.finish('failed', reason);
  }

  private finish(how: ConnectionEnd['how'], reason: string): void {
    if (this.ended) return;
    this.ended = { how, reason, sent: this.sent, received: this.received };
    clearInterval(this.timer);
    this.abort.abort(new Error(`connection ${how}: ${reason}`));
    this.settings.onEvent?.({ type: 'closed', id: this.id, ...this.ended });
    this.resolveEnd(this.ended);
  }
}
