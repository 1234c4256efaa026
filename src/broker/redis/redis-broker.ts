import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import {
  BrokerClosedError,
  BrokerUnavailableError,
  CapacityError,
  PipeBusyError,
  PipeError,
  ReceiverCountMismatchError,
} from '../errors.js';
import type {
  Broker,
  BrokerStats,
  OpenOptions,
  OpenSenderOptions,
  ReceiverSession,
  SenderSession,
} from '../types.js';
import { connect, type RedisTarget, type ScriptCalls, scriptsOn } from './connection.js';
import { pipeKeys } from './keys.js';
import { Notifier } from './notifier.js';
import type { PartyHooks, PipeContext, RedisPipeOptions } from './pipe-context.js';
import { RedisReceiverSession } from './redis-receiver.js';
import { RedisSenderSession } from './redis-sender.js';

export interface RedisBrokerOptions extends Partial<Omit<RedisPipeOptions, 'windowBytes'>> {
  readonly target: RedisTarget;
  readonly windowBytes: number;
  /** Pipes this instance takes part in at once. */
  readonly maxPipes: number;
  /** Parties waiting on this instance at once. */
  readonly maxWaiting: number;
  /** Prefix of every key and channel (tests give each run its own). */
  readonly keyPrefix?: string;
}

/** Refusals pass as they are; anything else from Redis means it cannot serve us now. */
function asPipeError(error: unknown): PipeError {
  return error instanceof PipeError ? error : new BrokerUnavailableError(error);
}

/** A party of this instance, in its books until it is done. */
interface LocalParty extends PartyHooks {
  waiting: boolean;
  /** Fails the party's wait (drain) or everything (close). */
  fail?: (error: Error) => void;
}

/**
 * The Redis Streams broker: no pipe state lives in the instance, so a sender on one instance and its
 * receivers on others meet through Redis. Two connections per instance whatever the load: one for commands,
 * one subscriber that multiplexes every wait (see `Notifier`).
 */
export class RedisBroker implements Broker {
  private readonly redis: Redis | Cluster;
  private readonly subscriber: Redis | Cluster;
  private readonly scripts: ScriptCalls;
  private readonly notifier: Notifier;
  private readonly pipeOptions: RedisPipeOptions;
  private readonly prefix: string;
  private readonly localPipes = new Map<string, number>();
  private readonly parties = new Set<LocalParty>();
  private waiting = 0;
  private closed = false;

  constructor(private readonly options: RedisBrokerOptions) {
    this.redis = connect(options.target);
    this.subscriber = connect(options.target);
    this.scripts = scriptsOn(this.redis);
    this.notifier = new Notifier(this.subscriber);
    this.prefix = options.keyPrefix ?? 'ep:';
    this.pipeOptions = {
      windowBytes: options.windowBytes,
      ttlMs: options.ttlMs ?? 15 * 60_000,
      pollMs: options.pollMs ?? 500,
      maxStreamEntries: options.maxStreamEntries ?? 10_000,
    };
  }

  async ready(): Promise<void> {
    await Promise.all([this.redis.connect(), this.subscriber.connect()]);
  }

  drain(): void {
    this.closed = true;
    const error = new BrokerClosedError();
    for (const party of [...this.parties]) if (party.waiting) party.fail?.(error);
  }

  async close(): Promise<void> {
    this.drain();
    await Promise.allSettled([this.redis.quit(), this.subscriber.quit()]);
  }

  stats(): BrokerStats {
    return { pipes: this.localPipes.size, waiting: this.waiting };
  }

  async openSender(options: OpenSenderOptions): Promise<SenderSession> {
    const onEvent = options.onEvent ?? (() => {});
    return this.open(
      options,
      's',
      (ctx, id, party, reply) =>
        new RedisSenderSession(ctx, id, reply.present, reply.established, onEvent, party),
    );
  }

  async openReceiver(options: OpenOptions): Promise<ReceiverSession> {
    return this.open(options, 'r', (ctx, id, party) => new RedisReceiverSession(ctx, id, party));
  }

  /**
   * Subscribes to the pipe's channel, claims the slot, then builds the session: subscribing first means no
   * event between the claim and the session is lost.
   */
  private async open<S extends RedisSenderSession | RedisReceiverSession>(
    options: OpenOptions,
    role: 's' | 'r',
    make: (
      ctx: PipeContext,
      id: string,
      party: LocalParty,
      reply: { present: number; established: boolean },
    ) => S,
  ): Promise<S> {
    const { ctx, id, party } = this.admit(options);
    let session: S | undefined;
    try {
      const unlisten = await this.notifier.listen(ctx.keys.events, (message) => session?.onMessage(message));
      const reply = await this.claim(ctx, role, id, unlisten);
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
      notifier: this.notifier,
      keys: pipeKeys(this.prefix, options.path),
      path: options.path,
      receivers: options.receivers,
      generation: '',
      options: this.pipeOptions,
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
      reply = (await this.scripts.open(
        [ctx.keys.meta, ctx.keys.readers],
        [role, id, ctx.receivers, this.pipeOptions.ttlMs, randomUUID(), ctx.keys.events],
      )) as unknown[];
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
}
