import { randomUUID } from 'node:crypto';
import { decode } from '@msgpack/msgpack';
import type { Cluster, Redis } from 'ioredis';
import type { AuditStore } from '../../selfheal/audit-trail.js';
import type { LatencySink } from '../../selfheal/latency-windows.js';
import {
  asPipeError,
  BrokerClosedError,
  CapacityError,
  NothingToResumeError,
  PipeBusyError,
  ReceiverCountMismatchError,
  ResumeOffsetError,
} from '../errors.js';
import type { WatchableBroker } from '../failover-broker.js';
import type { TopicStore, TopicStoreOptions } from '../topic-types.js';
import type {
  Broker,
  BrokerStats,
  OpenOptions,
  OpenReceiverOptions,
  OpenSenderOptions,
  PipeHeaders,
  PipeStatus,
  ReceiverSession,
  SenderSession,
} from '../types.js';
import { AppendBudget } from './append-budget.js';
import {
  connect,
  connectAll,
  type RedisTarget,
  type ScriptCalls,
  scriptsOn,
  timeCommands,
} from './connection.js';
import { EntryReader, type ReadEntries, readThrough } from './entry-reader.js';
import { decodeFrame, entryField } from './framing.js';
import { pipeKeys } from './keys.js';
import { deadInstances, InstanceHeartbeat, isDropped } from './liveness.js';
import { Notifier } from './notifier.js';
import type { PartyHooks, PipeContext, RedisPipeOptions } from './pipe-context.js';
import { END_AFTER_CANCEL_MS, type ReceiverResume, RedisReceiverSession } from './redis-receiver.js';
import { RedisSenderSession, type SenderResume } from './redis-sender.js';
import { RedisTopics } from './redis-topics.js';

export interface RedisBrokerOptions extends Partial<Omit<RedisPipeOptions, 'windowBytes'>> {
  readonly target: RedisTarget;
  readonly windowBytes: number;
  /** Pipes this instance takes part in at once. */
  readonly maxPipes: number;
  /** Parties waiting on this instance at once. */
  readonly maxWaiting: number;
  /** Prefix of every key and channel (tests give each run its own). */
  readonly keyPrefix?: string;
  /**
   * Where latencies go: chunk delivery (`chunk`, `ttfb`), and under `redisMetric` the round trips of the
   * probes (`ping`) and heartbeats, which run on a connection of their own: on the data connection every
   * command queues behind megabytes of pipelined appends (one transfer put a PING's p99 at ~100 ms on an
   * idle Redis), which says nothing about the Redis.
   */
  readonly latency?: LatencySink;
  readonly redisMetric?: 'redis' | 'redis_standby';
  /**
   * Receivers read payloads on a socket of the broker's own, without ioredis's copy (`EntryReader`; a single
   * Redis only). Off where `node:net` is not a real socket (the Workers adapter). Default true.
   */
  readonly directReads?: boolean;
}

/**
 * The instance's bound on upload bytes on their way to Redis, in windows, shared by all its senders (see
 * `AppendBudget`). One sender keeps at most half a window in flight, so one window lets two go at full pace.
 */
const APPEND_BUDGET_WINDOWS = 1;

/** How long `close` waits for parties' last words: a receiver's look for the end frame, then its leave. */
const LAST_WORDS_MS = END_AFTER_CANCEL_MS + 1000;

/** What the resume script hands a party that takes a dropped party's place. */
interface ResumeReply {
  readonly head: number;
  readonly seq: number;
  readonly receivers: number;
  readonly headers: PipeHeaders;
}

/** A party of this instance, in its books until it is done. */
interface LocalParty extends PartyHooks {
  waiting: boolean;
  /** Fails the party's wait (drain) or everything (close). */
  fail?: (error: Error) => void;
}

/**
 * The Redis Streams broker: no pipe state lives in the instance, so a sender on one instance and its
 * receivers on others meet through Redis. Three connections per instance whatever the load: one for
 * commands and data, one subscriber that multiplexes every wait (see `Notifier`), one for heartbeats and
 * probes; a fourth, opened at the first read of a transfer, carries the receivers' reads of payloads
 * (`EntryReader`, on a single Redis).
 */
export class RedisBroker implements Broker, WatchableBroker {
  /** With no grace period (`resumeGraceMs` 0) nothing waits for a dropped party: nothing can resume. */
  readonly resumable: boolean;
  private readonly redis: Redis | Cluster;
  private readonly subscriber: Redis | Cluster;
  /** Heartbeats and probes: small commands that must not wait behind bulk data. */
  private readonly control: Redis | Cluster;
  private readonly scripts: ScriptCalls;
  private readonly entryReader: EntryReader | undefined;
  private readonly readEntries: ReadEntries;
  private readonly notifier: Notifier;
  private readonly pipeOptions: RedisPipeOptions;
  private readonly prefix: string;
  private readonly localPipes = new Map<string, number>();
  private readonly parties = new Set<LocalParty>();
  /** Parties' last words still under way (see `PartyHooks.lastWord`). */
  private readonly lastWords = new Set<Promise<void>>();
  private waiting = 0;
  private closed = false;
  private readonly instanceId = randomUUID();
  /** Upload bytes on their way to Redis across all this instance's senders: one window (8 MiB by default). */
  private readonly appendBudget: AppendBudget;
  private readonly heartbeat: InstanceHeartbeat;
  private readonly topicStores = new Set<TopicStore>();

  constructor(private readonly options: RedisBrokerOptions) {
    this.redis = connect(options.target);
    this.subscriber = connect(options.target);
    this.control = connect(options.target);
    this.scripts = scriptsOn(this.redis);
    const target = options.target;
    this.entryReader =
      'url' in target && options.directReads !== false ? new EntryReader(target.url) : undefined;
    this.readEntries = this.entryReader
      ? (key, start, count) => this.entryReader!.xrange(key, start, count)
      : readThrough(this.redis);
    const latency = options.latency;
    if (latency) timeCommands(this.control, (ms) => latency.record(options.redisMetric ?? 'redis', ms));
    this.notifier = new Notifier(this.subscriber);
    this.prefix = options.keyPrefix ?? 'ep:';
    this.pipeOptions = {
      windowBytes: options.windowBytes,
      ttlMs: options.ttlMs ?? 15 * 60_000,
      pollMs: options.pollMs ?? 500,
      idlePollMs: options.idlePollMs ?? 10 * (options.pollMs ?? 500),
      maxStreamEntries: options.maxStreamEntries ?? 10_000,
      resumeGraceMs: options.resumeGraceMs ?? 30_000,
      socketBufferBytes: options.socketBufferBytes ?? 16 * 1024 * 1024,
      instanceTtlMs: options.instanceTtlMs ?? 3000,
      endedTtlMs: options.endedTtlMs ?? 60_000,
    };
    this.resumable = this.pipeOptions.resumeGraceMs > 0;
    this.appendBudget = new AppendBudget(APPEND_BUDGET_WINDOWS * options.windowBytes);
    this.heartbeat = new InstanceHeartbeat(
      this.control,
      this.prefix,
      this.instanceId,
      this.pipeOptions.instanceTtlMs,
    );
  }

  /** Topics on this broker's Redis, on its command connection (plus the store's own blocking ones). */
  openTopics(options: TopicStoreOptions): TopicStore {
    const store = new RedisTopics({ ...options, redis: this.redis, keyPrefix: this.prefix });
    this.topicStores.add(store);
    return store;
  }

  async ready(): Promise<void> {
    await connectAll([this.redis, this.subscriber, this.control], this.options.target);
    await this.heartbeat.start();
  }

  drain(): void {
    this.closed = true;
    const error = new BrokerClosedError();
    for (const party of [...this.parties]) if (party.waiting) party.fail?.(error);
  }

  async close(): Promise<void> {
    this.drain();
    // A receiver's leave must reach Redis, or its sender never hears it left. The Workers adapter closes
    // its per-request broker as soon as the receiver's body is cancelled, which is when the leave starts
    // (measured: the connections quit within 3 ms, and the leave was lost).
    if (this.lastWords.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.lastWords),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, LAST_WORDS_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.heartbeat.stop().catch(() => {});
    await Promise.allSettled([...this.topicStores].map((store) => store.close()));
    this.entryReader?.close();
    await Promise.allSettled([this.redis.quit(), this.subscriber.quit(), this.control.quit()]);
  }

  /** Upload bytes this instance holds on their way to Redis right now (bounded by one window). */
  get uploadBytesInFlight(): number {
    return this.appendBudget.held;
  }

  stats(): BrokerStats {
    return { pipes: this.localPipes.size, waiting: this.waiting };
  }

  async watchPath(path: string, onJoin: () => void): Promise<() => void> {
    return this.notifier.listen(pipeKeys(this.prefix, path).events, (message) => {
      if (message.startsWith('s:') || message.startsWith('r:')) onJoin();
    });
  }

  /** One round trip (the self-heal watcher's probe; timed like every command). */
  async ping(): Promise<void> {
    await this.control.ping();
  }

  /** One value in this Redis (self-heal state carried between Workers' cron runs). */
  async loadValue(name: string): Promise<string | null> {
    return this.redis.get(`${this.prefix}${name}`);
  }

  async saveValue(name: string, value: string): Promise<void> {
    await this.redis.set(`${this.prefix}${name}`, value);
  }

  /** A bounded list in this Redis that every instance sees (the self-heal audit trail). */
  auditStore(): AuditStore {
    const key = `${this.prefix}audit`;
    return {
      append: async (entry, keep) => {
        await this.redis
          .multi()
          .lpush(key, entry)
          .ltrim(key, 0, keep - 1)
          .exec();
      },
      recent: async (limit) => (await this.redis.lrange(key, 0, limit - 1)).reverse(),
    };
  }

  async inspect(path: string): Promise<PipeStatus | undefined> {
    try {
      const keys = pipeKeys(this.prefix, path);
      const [state, gen, sender] = await this.redis.hmget(keys.meta, 'state', 'gen', 'sinst');
      if (!state || !gen) return undefined;
      if (state === 'w' || state === 'e') return { state: 'waiting' };
      const last = await this.redis.xrevrangeBuffer(keys.data(gen), '+', '-', 'COUNT', 1);
      const frame = last[0]
        ? decodeFrame(entryField(last[0][1], 'h'), entryField(last[0][1], 'p'))
        : undefined;
      // An ended transfer whose end frame is still kept tells its length: a sender whose connection broke
      // after the last byte learns there that everything it sent was committed.
      const ended: PipeStatus =
        frame?.kind === 'end' ? { state: 'ended', committedOffset: frame.offset } : { state: 'ended' };
      if (state !== 's' || (frame && frame.kind !== 'data')) return ended;
      const committedOffset = frame ? frame.offset + frame.payload.byteLength : 0;
      const dead = await deadInstances(this.redis, this.prefix, [sender], this.instanceId);
      const senderDropped = isDropped(sender, dead);
      return { state: 'transferring', committedOffset, senderDropped };
    } catch (error) {
      throw asPipeError(error);
    }
  }

  async openSender(options: OpenSenderOptions): Promise<SenderSession> {
    const onEvent = options.onEvent ?? (() => {});
    const resumable = options.resumable === true;
    if (options.resumeAt !== undefined) {
      return this.open(options, 's', (ctx, id, party, reply) => {
        const resume: SenderResume = {
          offset: reply.resumed!.head,
          seq: reply.resumed!.seq,
          meta: { headers: reply.resumed!.headers },
        };
        return new RedisSenderSession(ctx, id, reply.present, true, onEvent, party, resumable, resume);
      });
    }
    return this.open(
      options,
      's',
      (ctx, id, party, reply) =>
        new RedisSenderSession(ctx, id, reply.present, reply.established, onEvent, party, resumable),
    );
  }

  async openReceiver(options: OpenReceiverOptions): Promise<ReceiverSession> {
    const offset = options.resumeAt;
    return this.open(options, 'r', (ctx, id, party, reply) => {
      const resume: ReceiverResume | undefined =
        offset === undefined ? undefined : { offset, meta: { headers: reply.resumed!.headers } };
      return new RedisReceiverSession(ctx, id, party, options.resumable === true, resume);
    });
  }

  /**
   * Subscribes to the pipe's channel, claims the slot, then builds the session: subscribing first means no
   * event between the claim and the session is lost.
   */
  private async open<S extends RedisSenderSession | RedisReceiverSession>(
    options: OpenOptions & { readonly resumeAt?: number },
    role: 's' | 'r',
    make: (
      ctx: PipeContext,
      id: string,
      party: LocalParty,
      reply: { present: number; established: boolean; resumed?: ResumeReply },
    ) => S,
  ): Promise<S> {
    const { ctx, id, party } = this.admit(options);
    let session: S | undefined;
    try {
      const unlisten = await this.notifier.listen(ctx.keys.events, (message) => session?.onMessage(message));
      const reply =
        options.resumeAt === undefined
          ? await this.claim(ctx, role, id, unlisten)
          : await this.claimDropped(ctx, role, id, options.resumeAt, unlisten);
      session = make(ctx, id, party, reply);
      session.attach(unlisten);
      party.fail = (error) => session?.fail(error);
      return session;
    } catch (error) {
      party.done();
      throw asPipeError(error);
    }
  }

  /** Checks this instance's limits and enters the new party in its books. */
  private admit(options: OpenOptions): { ctx: PipeContext; id: string; party: LocalParty } {
    if (this.closed) throw new BrokerClosedError();
    if (this.waiting >= this.options.maxWaiting) throw new CapacityError('waiting');
    const local = this.localPipes.get(options.path) ?? 0;
    if (local === 0 && this.localPipes.size >= this.options.maxPipes) throw new CapacityError('pipes');
    this.localPipes.set(options.path, local + 1);
    this.waiting += 1;
    let left = false;
    const party: LocalParty = {
      waiting: true,
      settled: () => {
        if (!party.waiting) return;
        party.waiting = false;
        this.waiting -= 1;
      },
      lastWord: (work) => {
        const said: Promise<void> = work
          .catch(() => {})
          .then(() => {
            this.lastWords.delete(said);
          });
        this.lastWords.add(said);
      },
      done: () => {
        if (left) return;
        left = true;
        party.settled();
        this.parties.delete(party);
        const count = (this.localPipes.get(options.path) ?? 1) - 1;
        if (count <= 0) this.localPipes.delete(options.path);
        else this.localPipes.set(options.path, count);
      },
    };
    this.parties.add(party);
    const ctx: PipeContext = {
      redis: this.redis,
      scripts: this.scripts,
      readEntries: this.readEntries,
      notifier: this.notifier,
      keys: pipeKeys(this.prefix, options.path),
      path: options.path,
      receivers: options.receivers,
      generation: '',
      options: this.pipeOptions,
      instanceId: this.instanceId,
      keyPrefix: this.prefix,
      latency: this.options.latency,
      appendBudget: this.appendBudget,
    };
    return { ctx, id: randomUUID(), party };
  }

  /** Runs the open script; on refusal unsubscribes and throws the matching pipe error. */
  private async claim(
    ctx: PipeContext,
    role: 's' | 'r',
    id: string,
    unlisten: () => void,
  ): Promise<{ present: number; established: boolean }> {
    let reply: unknown[];
    try {
      const open = async () =>
        (await this.scripts.open(
          [ctx.keys.meta, ctx.keys.readers, ctx.keys.owners],
          [role, id, ctx.receivers, this.pipeOptions.ttlMs, randomUUID(), ctx.keys.events, this.instanceId],
        )) as unknown[];
      reply = await open();
      // A slot held by a party of an instance that died while it waited is freed, then asked for again.
      if (
        reply[0] === 'err' &&
        (reply[1] === 'sender' || reply[1] === 'full') &&
        (await this.evictDead(ctx))
      ) {
        reply = await open();
      }
    } catch (error) {
      unlisten();
      throw error;
    }
    if (reply[0] === 'err') {
      unlisten();
      if (reply[1] === 'mismatch') throw new ReceiverCountMismatchError(Number(reply[2]), ctx.receivers);
      if (reply[1] === 'sender') throw new PipeBusyError(ctx.path, 'sender-connected');
      if (reply[1] === 'full') throw new PipeBusyError(ctx.path, 'receivers-full');
      throw new PipeBusyError(ctx.path, 'established');
    }
    (ctx as { generation: string }).generation = String(reply[3]);
    return { present: Number(reply[1]), established: Number(reply[2]) === 1 };
  }

  /**
   * Frees the slots of a waiting pipe's parties whose instance is dead (it crashed while they waited: no
   * one else would free them before the keys expire). True when one was freed.
   */
  private async evictDead(ctx: PipeContext): Promise<boolean> {
    const { keys } = ctx;
    const [state, gen, sender, senderOwner] = await this.redis.hmget(
      keys.meta,
      'state',
      'gen',
      'sender',
      'sinst',
    );
    if (state !== 'w' || !gen) return false;
    const owners = await this.redis.hgetall(keys.owners);
    const dead = new Set(
      await deadInstances(this.redis, this.prefix, [senderOwner, ...Object.values(owners)], this.instanceId),
    );
    const parties: Array<['s' | 'r', string]> = [];
    if (sender && senderOwner && dead.has(senderOwner)) parties.push(['s', sender]);
    for (const [party, owner] of Object.entries(owners)) if (dead.has(owner)) parties.push(['r', party]);
    for (const [role, party] of parties) {
      await this.scripts.leave([keys.meta, keys.readers, keys.owners], [role, party, gen, keys.events]);
    }
    return parties.length > 0;
  }

  /**
   * Takes the place of a party that dropped out of a running transfer. Right after an instance died its
   * heartbeat key still lives for up to `instanceTtlMs` (and a receiver that just left may still be waiting
   * for an end frame: `END_AFTER_CANCEL_MS`): a resume that finds its party still "connected" retries until
   * that has passed, so a client resuming at once is not turned away.
   */
  private async claimDropped(
    ctx: PipeContext,
    role: 's' | 'r',
    id: string,
    offset: number,
    unlisten: () => void,
  ): Promise<{ present: number; established: boolean; resumed: ResumeReply }> {
    const { keys, path } = ctx;
    // A margin of at least half a second: the drop is marked a round trip or two after those times.
    const waitFor =
      Math.max(this.pipeOptions.instanceTtlMs, END_AFTER_CANCEL_MS) + Math.max(this.pipeOptions.pollMs, 500);
    const deadline = Date.now() + waitFor;
    try {
      for (;;) {
        const lastTry = Date.now() >= deadline;
        const [gen, sender] = await this.redis.hmget(keys.meta, 'gen', 'sinst');
        if (!gen) throw new NothingToResumeError(path, 'no-transfer');
        const owners = role === 's' ? [sender] : await this.redis.hvals(keys.owners);
        const dead = await deadInstances(this.redis, this.prefix, owners, this.instanceId);
        const reply = (await this.scripts.resume(
          [keys.meta, keys.readers, keys.owners, keys.data(gen)],
          [
            role,
            id,
            this.instanceId,
            offset,
            gen,
            keys.events,
            dead.join(' '),
            this.pipeOptions.ttlMs,
            this.pipeOptions.resumeGraceMs,
            this.pipeOptions.windowBytes + this.pipeOptions.socketBufferBytes,
            lastTry ? '1' : '0',
          ],
        )) as unknown[];
        if (reply[0] === 'ok') {
          (ctx as { generation: string }).generation = gen;
          (ctx as { receivers: number }).receivers = Number(reply[3]);
          // Headers are msgpack, so they are read as bytes (script replies arrive as text).
          const encoded = await this.redis.hgetBuffer(keys.meta, 'headers');
          const headers = encoded ? (decode(encoded) as PipeHeaders) : [];
          const resumed = {
            head: Number(reply[1]),
            seq: Number(reply[2]),
            receivers: Number(reply[3]),
            headers,
          };
          return { present: resumed.receivers, established: true, resumed };
        }
        const reason = String(reply[1]);
        if (reason === 'offset') throw new ResumeOffsetError(offset, Number(reply[2]), Number(reply[3]));
        const stillConnected = reason === 'sender-connected' || reason === 'no-dropped-receiver';
        if (!stillConnected || lastTry) {
          throw new NothingToResumeError(path, reason as NothingToResumeError['reason']);
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(250, this.pipeOptions.pollMs)));
      }
    } catch (error) {
      unlisten();
      throw error;
    }
  }
}
