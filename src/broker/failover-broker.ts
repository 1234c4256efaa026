import { BrokerUnavailableError } from './errors.js';
import type { TopicStore, TopicStoreOptions } from './topic-types.js';
import type {
  Broker,
  BrokerStats,
  OpenReceiverOptions,
  OpenSenderOptions,
  PipeMeta,
  PipeStatus,
  ReceiverSession,
  SenderSession,
} from './types.js';

/** A backend that can tell when a party joins a path (the Redis broker does, through its Pub/Sub). */
export interface WatchableBroker extends Broker {
  /** Calls `onJoin` whenever a party joins `path` on this backend; resolves with a function that stops it. */
  watchPath(path: string, onJoin: () => void): Promise<() => void>;
}

export type BackendName = 'primary' | 'standby';

/** How long the standby may take to say whether a pipe waits there; a hung standby must not stall the primary. */
const STANDBY_ANSWER_MS = 250;

/** `promise`'s value, or `undefined` when it fails or takes longer than `ms`. */
function bounded<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}

export interface FailoverBrokerOptions {
  /** How often a party waiting on the primary also looks at the standby without being told to. */
  readonly pollMs: number;
  /** Called when the backend new pipes go to changes. */
  readonly onSwitch?: (backend: BackendName) => void;
}

/**
 * A primary and a standby backend (two Redis deployments); new pipes go to the active one, pipes already
 * running stay where they are. Instances decide on their own when to switch (see `src/selfheal`), so two
 * instances may disagree for a while. Parties of one path still meet, by one rule that needs no agreement:
 * **a pipe waiting on the standby wins.** A new party joins a pipe waiting on the standby if there is one,
 * else opens on its instance's active backend; a party waiting on the primary watches the path on the
 * standby and moves there as soon as someone waits on it. A party on the standby never moves.
 */
export class FailoverBroker implements Broker {
  readonly resumable = true;
  private active: BackendName = 'primary';

  constructor(
    private readonly primary: WatchableBroker,
    private readonly standby: WatchableBroker,
    private readonly options: FailoverBrokerOptions,
  ) {}

  /** Where new pipes go. */
  get backend(): BackendName {
    return this.active;
  }

  use(backend: BackendName): void {
    if (backend === this.active) return;
    this.active = backend;
    this.options.onSwitch?.(backend);
  }

  /**
   * Topics of the active backend, chosen per call: after a switch, appends and reads go to the standby's
   * Redis (records kept on the primary wait there until it is active again; topics are not migrated).
   */
  openTopics(options: TopicStoreOptions): TopicStore {
    const stores = {
      primary: this.primary.openTopics?.(options),
      standby: this.standby.openTopics?.(options),
    };
    const active = (): TopicStore => {
      const store = stores[this.active];
      if (!store) throw new BrokerUnavailableError(undefined, `The ${this.active} backend keeps no topics.`);
      return store;
    };
    return {
      append: async (append) => active().append(append),
      read: async (read) => active().read(read),
      ack: async (ack) => active().ack(ack),
      status: async (topic) => active().status(topic),
      close: async () => {
        await Promise.all([stores.primary?.close(), stores.standby?.close()]);
      },
    };
  }

  async ready(): Promise<void> {
    await Promise.all([this.primary.ready(), this.standby.ready()]);
  }

  drain(): void {
    this.primary.drain();
    this.standby.drain();
  }

  async close(): Promise<void> {
    await Promise.all([this.primary.close(), this.standby.close()]);
  }

  stats(): BrokerStats {
    const a = this.primary.stats();
    const b = this.standby.stats();
    return { pipes: a.pipes + b.pipes, waiting: a.waiting + b.waiting };
  }

  async inspect(path: string): Promise<PipeStatus | undefined> {
    const [standby, onPrimary] = await Promise.all([
      bounded(this.standby.inspect(path), STANDBY_ANSWER_MS),
      this.primary.inspect(path).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
    ]);
    const primary = 'value' in onPrimary ? onPrimary.value : undefined;
    // A running transfer is what a client asks about; else whatever exists, the standby first.
    if (standby?.state === 'transferring') return standby;
    if (primary?.state === 'transferring') return primary;
    if (standby || primary) return standby ?? primary;
    if ('error' in onPrimary && this.active === 'primary') throw onPrimary.error;
    return undefined;
  }

  async openSender(options: OpenSenderOptions): Promise<SenderSession> {
    if (options.resumeAt !== undefined) return (await this.holderOf(options.path)).openSender(options);
    const backend = await this.backendFor(options.path);
    const session = await backend.openSender(options);
    if (backend === this.standby) return session;
    return new MigratingSender(session, options, this.standby, this.options.pollMs);
  }

  async openReceiver(options: OpenReceiverOptions): Promise<ReceiverSession> {
    if (options.resumeAt !== undefined) return (await this.holderOf(options.path)).openReceiver(options);
    const backend = await this.backendFor(options.path);
    const session = await backend.openReceiver(options);
    if (backend === this.standby) return session;
    return new MigratingReceiver(session, options, this.standby, this.options.pollMs);
  }

  /** The standby if a pipe waits there (the rule that makes parties meet), else the active backend. */
  private async backendFor(path: string): Promise<WatchableBroker> {
    const onStandby = await bounded(this.standby.inspect(path), STANDBY_ANSWER_MS);
    if (onStandby?.state === 'waiting') return this.standby;
    return this.active === 'primary' ? this.primary : this.standby;
  }

  /** Where a running transfer of `path` lives (for a resume). */
  private async holderOf(path: string): Promise<WatchableBroker> {
    const onStandby = await bounded(this.standby.inspect(path), STANDBY_ANSWER_MS);
    return onStandby?.state === 'transferring' ? this.standby : this.primary;
  }
}

/** A party that may move from the primary to the standby while it waits, until it gives up. */
abstract class Movable {
  private readonly giving = new AbortController();
  /** Aborted when the party gives up (cancel, release, abort): the wait and any move stop. */
  readonly gaveUp = this.giving.signal;

  protected giveUp(): void {
    this.giving.abort(new Error('gave up'));
  }
}

/**
 * Waits on the primary while watching the standby; moves there when a pipe of the same path waits on it.
 * The move happens only before the party's transfer is established, so no byte ever crosses backends, and
 * never after the party gave up (a slot nobody owns would stall its pipe).
 */
async function waitWatchingStandby<S>(
  party: Movable,
  path: string,
  standby: WatchableBroker,
  pollMs: number,
  signal: AbortSignal,
  wait: (signal: AbortSignal) => Promise<S>,
  move: () => Promise<void>,
): Promise<S> {
  if (signal.aborted) throw signal.reason;
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  const onGiveUp = () => stop.abort(party.gaveUp.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  party.gaveUp.addEventListener('abort', onGiveUp, { once: true });
  let poke: () => void = () => {};
  // The wait starts at once; watching the standby is set up beside it (its answer may be slow).
  const waited = wait(stop.signal).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  const unwatch = bounded(
    standby.watchPath(path, () => poke()),
    STANDBY_ANSWER_MS * 4,
  );
  const timer = setInterval(() => poke(), pollMs);
  try {
    for (;;) {
      const poked = new Promise<'poke'>((resolve) => {
        poke = () => resolve('poke');
      });
      const outcome = await Promise.race([waited, poked]);
      if (outcome !== 'poke') {
        if ('error' in outcome) throw outcome.error;
        return outcome.value;
      }
      const there = await Promise.race([
        bounded(standby.inspect(path), STANDBY_ANSWER_MS),
        waited.then(() => undefined),
      ]);
      if (there?.state === 'waiting' && !party.gaveUp.aborted) break;
    }
    stop.abort(new MovedToStandby());
    // Established on the primary in the meantime: it stays there.
    const last = await waited;
    if ('value' in last) return last.value;
  } finally {
    clearInterval(timer);
    void unwatch.then((stopWatching) => stopWatching?.());
    signal.removeEventListener('abort', onAbort);
    party.gaveUp.removeEventListener('abort', onGiveUp);
  }
  await move();
  if (party.gaveUp.aborted) throw party.gaveUp.reason;
  return wait(signal);
}

/** The reason a primary-side wait is stopped with when its party moves to the standby. */
class MovedToStandby extends Error {
  override name = 'MovedToStandby';
}

class MigratingSender extends Movable implements SenderSession {
  readonly connectedAtOpen: number;
  readonly resumedAt: number | undefined;
  readonly resumedMeta: PipeMeta | undefined;

  constructor(
    private inner: SenderSession,
    private readonly options: OpenSenderOptions,
    private readonly standby: WatchableBroker,
    private readonly pollMs: number,
  ) {
    super();
    this.connectedAtOpen = inner.connectedAtOpen;
    this.resumedAt = inner.resumedAt;
    this.resumedMeta = inner.resumedMeta;
  }

  waitForReceivers(signal: AbortSignal): Promise<void> {
    return waitWatchingStandby(
      this,
      this.options.path,
      this.standby,
      this.pollMs,
      signal,
      (s) => this.inner.waitForReceivers(s),
      async () => {
        this.inner.release();
        const moved = await this.standby.openSender(this.options);
        // It gave up while the slot was being claimed: give the new slot back too.
        if (this.gaveUp.aborted) moved.release();
        this.inner = moved;
      },
    );
  }

  start(meta: PipeMeta): Promise<void> {
    return this.inner.start(meta);
  }
  write(chunk: Uint8Array): Promise<void> {
    return this.inner.write(chunk);
  }
  end(): Promise<void> {
    return this.inner.end();
  }
  abort(reason?: string): void {
    this.giveUp();
    this.inner.abort(reason);
  }
  interrupt(reason?: string): Promise<void> {
    this.giveUp();
    return this.inner.interrupt(reason);
  }
  release(): void {
    this.giveUp();
    this.inner.release();
  }
}

class MigratingReceiver extends Movable implements ReceiverSession {
  constructor(
    private inner: ReceiverSession,
    private readonly options: OpenReceiverOptions,
    private readonly standby: WatchableBroker,
    private readonly pollMs: number,
  ) {
    super();
  }

  waitForStart(signal: AbortSignal): Promise<PipeMeta> {
    return waitWatchingStandby(
      this,
      this.options.path,
      this.standby,
      this.pollMs,
      signal,
      (s) => this.inner.waitForStart(s),
      async () => {
        this.inner.cancel();
        const moved = await this.standby.openReceiver(this.options);
        if (this.gaveUp.aborted) moved.cancel();
        this.inner = moved;
      },
    );
  }

  read(): Promise<Uint8Array | null> {
    return this.inner.read();
  }
  cancel(): void {
    this.giveUp();
    this.inner.cancel();
  }
}
