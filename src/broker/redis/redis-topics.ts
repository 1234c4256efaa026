import type { Cluster, Redis } from 'ioredis';
import { type Clock, systemClock } from '../../clock.js';
import { isBelow, namespaceOf } from '../../protocol/topic-layout.js';
import { asPipeError, CapacityError } from '../errors.js';
import type {
  AckOptions,
  AppendOptions,
  AppendResult,
  ReadOptions,
  TopicRecord,
  TopicStatus,
  TopicStore,
  TopicStoreOptions,
} from '../topic-types.js';
import { namespaceKeys, topicKeys } from './keys.js';
import { topicAppendScript, topicReadScript } from './topic-scripts.js';

/** Blocking connections one store opens at most; more waiting reads poll instead. */
export const MAX_BLOCKING_CONNECTIONS = 16;
/** Consumer groups one namespace knows at most. */
export const MAX_GROUPS_PER_NAMESPACE = 10_000;
/** One blocking XREAD waits at most this long, so a read whose client left frees its connection soon. */
const BLOCK_SLICE_MS = 1000;
/** How long a waiting read that found no free blocking connection sleeps before it looks again. */
const POLL_MS = 250;

export interface RedisTopicsOptions extends TopicStoreOptions {
  /** The broker's command connection (shared: scripts, acks and status go on it). */
  readonly redis: Redis | Cluster;
  readonly keyPrefix: string;
}

type Call = (...args: Array<string | number | Uint8Array>) => Promise<unknown>;

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Topics on Redis Streams (docs/topic-protocol.md): a stream per topic, a consumer group per group.
 * Appends, reads and trims are Lua scripts on the broker's command connection; a read that waits blocks in
 * XREAD on a duplicated connection of its own (at most `MAX_BLOCKING_CONNECTIONS`), so a waiting read never
 * stalls the commands of others, then reads again through the script, which keeps the order of the
 * protocol (own pending, claimed, new).
 */
export class RedisTopics implements TopicStore {
  private readonly redis: Redis | Cluster;
  private readonly clock: Clock;
  private readonly appendCall: Call;
  private readonly readCall: Call;
  private readonly idle: Array<Redis | Cluster> = [];
  private blocking = 0;
  private readonly all = new Set<Redis | Cluster>();
  private readonly closing = new AbortController();
  /**
   * The waits that `close` ends. A set rather than a listener each on `closing.signal`: an EventTarget warns
   * of a leak past 10 listeners, and a busy server has many more reads waiting at once.
   */
  private readonly waits = new Set<() => void>();

  constructor(private readonly options: RedisTopicsOptions) {
    this.redis = options.redis;
    this.clock = options.clock ?? systemClock;
    this.redis.defineCommand('ep_topic_append', {
      numberOfKeys: topicAppendScript.numberOfKeys,
      lua: topicAppendScript.lua,
    });
    // The read takes as many keys as topics it reads: the count goes first (EVALSHA numkeys).
    this.redis.defineCommand('ep_topic_read', { lua: topicReadScript.lua });
    const commands = this.redis as unknown as Record<string, Call>;
    this.appendCall = commands.ep_topic_append!.bind(this.redis);
    // The Buffer form: records are bytes, not text.
    this.readCall = commands.ep_topic_readBuffer!.bind(this.redis);
  }

  async append({ topic, records, idempotencyKey }: AppendOptions): Promise<AppendResult> {
    const namespace = namespaceOf(topic);
    const keys = topicKeys(this.options.keyPrefix, namespace, topic);
    const space = namespaceKeys(this.options.keyPrefix, namespace);
    const now = this.clock.now();
    const bounds = this.options.boundsOf(topic);
    const reply = (await this.appendCall(
      keys.stream,
      keys.meta,
      space.index,
      keys.idempotency(idempotencyKey ?? ''),
      space.announce,
      topic,
      this.options.maxTopics,
      bounds.maxRecords,
      bounds.maxBytes,
      now - bounds.maxAgeMs,
      now,
      idempotencyKey === undefined ? 0 : this.options.idempotencyWindowMs,
      ...records.map((record) => Buffer.from(record.buffer, record.byteOffset, record.byteLength)),
    ).catch((error: unknown) => Promise.reject(asPipeError(error)))) as [string, ...unknown[]];
    if (reply[0] === 'err') throw new CapacityError('topics');
    const [, count, first, last, replay] = reply as [string, number, string, string, number];
    return { count, first, last, replay: replay === 1 };
  }

  async read(options: ReadOptions): Promise<TopicRecord[]> {
    const topics = await this.topicsOf(options);
    const namespace = namespaceOf(options.topic ?? options.prefix ?? '');
    if (topics.length === 0 && options.waitMs <= 0) return [];
    // The wait ends at the deadline (on the store's clock), when the client leaves, or at close.
    const ended = new AbortController();
    const end = () => ended.abort();
    const cancelDeadline = this.clock.setTimeout(end, options.waitMs);
    if (options.signal?.aborted) end();
    options.signal?.addEventListener('abort', end, { once: true });
    if (this.closing.signal.aborted) end();
    this.waits.add(end);
    try {
      let current = topics;
      for (;;) {
        const { records, newest } = await this.readOnce(options, namespace, current);
        if (records.length > 0 || options.waitMs <= 0 || ended.signal.aborted) return records;
        await this.waitForNew(current, namespace, newest, options.prefix !== undefined, ended.signal);
        if (ended.signal.aborted) return [];
        // A namespace read looks for topics that appeared while it waited.
        if (options.prefix !== undefined) current = await this.topicsOf(options);
      }
    } finally {
      cancelDeadline();
      options.signal?.removeEventListener('abort', end);
      this.waits.delete(end);
    }
  }

  async ack({ group, records }: AckOptions): Promise<number> {
    const byTopic = new Map<string, string[]>();
    for (const { topic, id } of records) {
      const ids = byTopic.get(topic) ?? [];
      ids.push(id);
      byTopic.set(topic, ids);
    }
    let acked = 0;
    for (const [topic, ids] of byTopic) {
      const { stream } = topicKeys(this.options.keyPrefix, namespaceOf(topic), topic);
      acked += await this.redis.xack(stream, group, ...ids).catch((error: unknown) => {
        // No such group on this topic (never read): nothing was pending.
        if (error instanceof Error && /NOGROUP/.test(error.message)) return 0;
        throw asPipeError(error);
      });
    }
    return acked;
  }

  async status(topic: string): Promise<TopicStatus> {
    const { stream, meta } = topicKeys(this.options.keyPrefix, namespaceOf(topic), topic);
    try {
      const [records, [bytes, dropped], first, last] = await Promise.all([
        this.redis.xlen(stream),
        this.redis.hmget(meta, 'bytes', 'dropped'),
        this.redis.xrange(stream, '-', '+', 'COUNT', 1),
        this.redis.xrevrange(stream, '+', '-', 'COUNT', 1),
      ]);
      return {
        records,
        bytes: Number(bytes ?? 0),
        dropped: Number(dropped ?? 0),
        ...(first[0] && { firstId: first[0][0] }),
        ...(last[0] && { lastId: last[0][0] }),
      };
    } catch (error) {
      throw asPipeError(error);
    }
  }

  async close(): Promise<void> {
    this.closing.abort();
    for (const end of this.waits) end();
    this.waits.clear();
    for (const connection of this.all) connection.disconnect();
    this.all.clear();
    this.idle.length = 0;
  }

  /** The topics a read names: the one topic, or those of the namespace index below the prefix, sorted. */
  private async topicsOf({ topic, prefix }: ReadOptions): Promise<string[]> {
    if (topic !== undefined) return [topic];
    const { index } = namespaceKeys(this.options.keyPrefix, namespaceOf(prefix!));
    const names = await this.redis
      .smembers(index)
      .catch((error: unknown) => Promise.reject(asPipeError(error)));
    return names.filter((name) => isBelow(name, prefix!)).sort();
  }

  private async readOnce(
    options: ReadOptions,
    namespace: string,
    topics: readonly string[],
  ): Promise<{ records: TopicRecord[]; newest: string[] }> {
    if (topics.length === 0) return { records: [], newest: [] };
    const now = this.clock.now();
    const keys: string[] = [namespaceKeys(this.options.keyPrefix, namespace).groups];
    const perTopic: Array<string | number> = [];
    for (const topic of topics) {
      const { stream, meta } = topicKeys(this.options.keyPrefix, namespace, topic);
      const bounds = this.options.boundsOf(topic);
      keys.push(stream, meta);
      perTopic.push(
        bounds.maxRecords,
        bounds.maxBytes,
        now - bounds.maxAgeMs,
        options.deliveredUpTo?.get(topic) ?? '0',
      );
    }
    const reply = (await this.readCall(
      keys.length,
      ...keys,
      options.group,
      options.consumer,
      options.count,
      this.options.claimAfterMs,
      now,
      options.start,
      MAX_GROUPS_PER_NAMESPACE,
      ...perTopic,
    ).catch((error: unknown) => Promise.reject(asPipeError(error)))) as [unknown, unknown];
    // {'err', 'groups'} comes as Buffers (the Buffer form of the command); a normal answer holds two lists.
    if (!Array.isArray(reply[0])) throw new CapacityError('groups');
    const flat = reply[0] as Array<number | string | Uint8Array>;
    const records: TopicRecord[] = [];
    for (let i = 0; i < flat.length; i += 4) {
      records.push({
        topic: topics[Number(flat[i]) - 1]!,
        id: String(flat[i + 1]),
        data: new Uint8Array(flat[i + 2] as Uint8Array),
        deliveries: Number(flat[i + 3]),
      });
    }
    return { records, newest: (reply[1] as string[]).map(String) };
  }

  /**
   * Waits until a topic gets a record newer than `newest` or, for a namespace read, a new topic appears,
   * for one slice at most.
   */
  private async waitForNew(
    topics: readonly string[],
    namespace: string,
    newest: readonly string[],
    namespaceRead: boolean,
    signal: AbortSignal,
  ): Promise<void> {
    if (topics.length === 0 && !namespaceRead) return pause(POLL_MS, signal);
    const connection = this.acquire();
    if (!connection) return pause(POLL_MS, signal);
    const streams = topics.map((topic) => topicKeys(this.options.keyPrefix, namespace, topic).stream);
    const ids = [...newest];
    // '$': a topic created from now on (one created since the read looked is seen at the slice's end).
    if (namespaceRead) {
      streams.push(namespaceKeys(this.options.keyPrefix, namespace).announce);
      ids.push('$');
    }
    const blocked = connection.xread('COUNT', 1, 'BLOCK', BLOCK_SLICE_MS, 'STREAMS', ...streams, ...ids).then(
      () => this.release(connection),
      () => {
        // A failed connection is dropped, not reused; the next read opens another.
        this.all.delete(connection);
        this.blocking--;
        connection.disconnect();
      },
    );
    await Promise.race([blocked, pause(BLOCK_SLICE_MS + 1000, signal)]);
  }

  /** A free blocking connection, a new one while under the bound, or none. */
  private acquire(): Redis | Cluster | undefined {
    const free = this.idle.pop();
    if (free) return free;
    if (this.blocking >= MAX_BLOCKING_CONNECTIONS || this.closing.signal.aborted) return undefined;
    const connection = this.redis.duplicate();
    // Outages are reported by the broker's own connections; a blocked read just ends and reads again.
    connection.on('error', () => {});
    this.blocking++;
    this.all.add(connection);
    return connection;
  }

  private release(connection: Redis | Cluster): void {
    if (this.closing.signal.aborted || !this.all.has(connection)) return;
    this.idle.push(connection);
  }
}
