import { type Clock, systemClock } from '../../clock.js';
import { isBelow, namespaceOf } from '../../protocol/topic-layout.js';
import { CapacityError } from '../errors.js';
import { compareIds } from '../topic-bounds.js';
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

/** Idempotency keys one topic remembers at most; past it the oldest is forgotten before its window ends. */
export const MAX_KEYS_PER_TOPIC = 100_000;
/** Consumer groups the store knows at most (per namespace and name). */
export const MAX_GROUPS = 10_000;
/** Reads waiting for a record at once; more are refused (429). */
export const MAX_WAITERS = 10_000;

interface Entry {
  readonly id: string;
  readonly ms: number;
  readonly data: Uint8Array;
}

interface Pending {
  consumer: string;
  deliveries: number;
  deliveredAt: number;
}

interface Group {
  /** Entries with a later `[ms, seq]` are new to the group. */
  cursor: readonly [number, number];
  /** Handed out, not acknowledged; bounded by the topic's records (trimmed records leave it). */
  readonly pending: Map<string, Pending>;
}

interface Topic {
  /** Kept records from `head` on (dropped ones are cut off in bulk, not shifted one by one). */
  entries: Entry[];
  head: number;
  readonly byId: Map<string, Entry>;
  bytes: number;
  dropped: number;
  lastMs: number;
  lastSeq: number;
  readonly keys: Map<string, { readonly result: AppendResult; readonly expiresAt: number }>;
  readonly groups: Map<string, Group>;
}

interface Waiter {
  readonly wants: (topic: string) => boolean;
  readonly wake: () => void;
}

function idParts(id: string): readonly [number, number] {
  const dash = id.indexOf('-');
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

function after(id: string, cursor: readonly [number, number]): boolean {
  const [ms, seq] = idParts(id);
  return ms === cursor[0] ? seq > cursor[1] : ms > cursor[0];
}

/**
 * Topics in the memory of one process: the semantics of the Redis store (docs/topic-protocol.md) within
 * bounded maps, time from an injected clock.
 */
export class MemoryTopics implements TopicStore {
  private readonly topics = new Map<string, Topic>();
  /** `<namespace>\n<group>` → when the group began (0: from the earliest record). */
  private readonly groupStarts = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private readonly clock: Clock;
  private closed = false;

  constructor(private readonly options: TopicStoreOptions) {
    this.clock = options.clock ?? systemClock;
  }

  async append({ topic: name, records, idempotencyKey }: AppendOptions): Promise<AppendResult> {
    const now = this.clock.now();
    let topic = this.topics.get(name);
    if (!topic) {
      if (this.topics.size >= this.options.maxTopics) throw new CapacityError('topics');
      topic = {
        entries: [],
        head: 0,
        byId: new Map(),
        bytes: 0,
        dropped: 0,
        lastMs: 0,
        lastSeq: 0,
        keys: new Map(),
        groups: new Map(),
      };
      this.topics.set(name, topic);
    }
    this.forgetKeys(topic, now);
    const seen = idempotencyKey === undefined ? undefined : topic.keys.get(idempotencyKey);
    if (seen) return { ...seen.result, replay: true };
    let first = '';
    let last = '';
    for (const data of records) {
      const ms = Math.max(now, topic.lastMs);
      const seq = ms === topic.lastMs ? topic.lastSeq + 1 : 0;
      topic.lastMs = ms;
      topic.lastSeq = seq;
      const entry: Entry = { id: `${ms}-${seq}`, ms, data };
      topic.entries.push(entry);
      topic.byId.set(entry.id, entry);
      topic.bytes += data.byteLength;
      if (!first) first = entry.id;
      last = entry.id;
    }
    this.trim(name, topic, now);
    const result: AppendResult = { count: records.length, first, last, replay: false };
    if (idempotencyKey !== undefined) {
      if (topic.keys.size >= MAX_KEYS_PER_TOPIC) topic.keys.delete(topic.keys.keys().next().value!);
      topic.keys.set(idempotencyKey, { result, expiresAt: now + this.options.idempotencyWindowMs });
    }
    for (const waiter of this.waiters) if (waiter.wants(name)) waiter.wake();
    return result;
  }

  async read(options: ReadOptions): Promise<TopicRecord[]> {
    const deadline = this.clock.now() + options.waitMs;
    for (;;) {
      const records = this.collect(options);
      if (records.length > 0 || this.closed) return records;
      const left = deadline - this.clock.now();
      if (left <= 0 || options.signal?.aborted) return [];
      await this.waitForAppend(options, left);
    }
  }

  async ack({ group, records }: AckOptions): Promise<number> {
    let acked = 0;
    for (const { topic, id } of records) {
      if (this.topics.get(topic)?.groups.get(group)?.pending.delete(id)) acked++;
    }
    return acked;
  }

  async status(name: string): Promise<TopicStatus> {
    const topic = this.topics.get(name);
    if (!topic) return { records: 0, bytes: 0, dropped: 0 };
    const count = topic.entries.length - topic.head;
    return {
      records: count,
      bytes: topic.bytes,
      dropped: topic.dropped,
      ...(count > 0 && { firstId: topic.entries[topic.head]!.id, lastId: topic.entries.at(-1)!.id }),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters) waiter.wake();
  }

  /** One pass: own pending records, then stale ones of other consumers, then new ones. */
  private collect(options: ReadOptions): TopicRecord[] {
    const { consumer, count } = options;
    const now = this.clock.now();
    const start = this.groupStart(options, now);
    const selected = this.selected(options);
    for (const [name, topic] of selected) this.trim(name, topic, now);
    const groups = selected.map(
      ([name, topic]) => [name, topic, this.groupOf(topic, options.group, start)] as const,
    );
    const out: TopicRecord[] = [];
    const hand = (name: string, topic: Topic, id: string, pending: Pending) => {
      pending.consumer = consumer;
      pending.deliveries++;
      pending.deliveredAt = now;
      out.push({ topic: name, id, data: topic.byId.get(id)!.data, deliveries: pending.deliveries });
    };
    for (const [name, topic, group] of groups) {
      const upTo = options.deliveredUpTo?.get(name);
      for (const id of [...group.pending.keys()].sort(compareIds)) {
        if (out.length >= count) return out;
        const pending = group.pending.get(id)!;
        if (pending.consumer !== consumer || (upTo !== undefined && compareIds(id, upTo) <= 0)) continue;
        hand(name, topic, id, pending);
      }
    }
    for (const [name, topic, group] of groups) {
      for (const id of [...group.pending.keys()].sort(compareIds)) {
        if (out.length >= count) return out;
        const pending = group.pending.get(id)!;
        if (pending.consumer === consumer || now - pending.deliveredAt < this.options.claimAfterMs) continue;
        hand(name, topic, id, pending);
      }
    }
    for (const [name, topic, group] of groups) {
      for (let i = this.firstAfter(topic, group.cursor); i < topic.entries.length; i++) {
        if (out.length >= count) return out;
        const entry = topic.entries[i]!;
        const pending: Pending = { consumer, deliveries: 0, deliveredAt: now };
        group.pending.set(entry.id, pending);
        group.cursor = idParts(entry.id);
        hand(name, topic, entry.id, pending);
      }
    }
    return out;
  }

  /** The topics a read names, in name order. */
  private selected({ topic, prefix }: ReadOptions): Array<readonly [string, Topic]> {
    if (topic !== undefined) {
      const one = this.topics.get(topic);
      return one ? [[topic, one]] : [];
    }
    const below = [...this.topics].filter(([name]) => prefix !== undefined && isBelow(name, prefix));
    return below.sort(([a], [b]) => (a < b ? -1 : 1));
  }

  /** When group `group` of the read's namespace began, registered on its first read. */
  private groupStart({ topic, prefix, group, start }: ReadOptions, now: number): number {
    const key = `${namespaceOf(topic ?? prefix ?? '')}\n${group}`;
    const known = this.groupStarts.get(key);
    if (known !== undefined) return known;
    if (this.groupStarts.size >= MAX_GROUPS) throw new CapacityError('groups');
    const began = start === 'latest' ? now : 0;
    this.groupStarts.set(key, began);
    return began;
  }

  private groupOf(topic: Topic, name: string, start: number): Group {
    let group = topic.groups.get(name);
    if (!group) {
      if (topic.groups.size >= MAX_GROUPS) throw new CapacityError('groups');
      // Records appended from the group's start on are new to it (`latest`), or every record (`earliest`).
      group = { cursor: start === 0 ? [0, -1] : [start - 1, Number.POSITIVE_INFINITY], pending: new Map() };
      topic.groups.set(name, group);
    }
    return group;
  }

  /** Index of the first kept entry after `cursor` (binary search: ids increase). */
  private firstAfter(topic: Topic, cursor: readonly [number, number]): number {
    let low = topic.head;
    let high = topic.entries.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (after(topic.entries[middle]!.id, cursor)) high = middle;
      else low = middle + 1;
    }
    return low;
  }

  /** Drops the oldest records while the topic passes a bound (retention beats delivery). */
  private trim(name: string, topic: Topic, now: number): void {
    const { maxRecords, maxBytes, maxAgeMs } = this.options.boundsOf(name);
    while (topic.head < topic.entries.length) {
      const oldest = topic.entries[topic.head]!;
      const count = topic.entries.length - topic.head;
      if (count <= maxRecords && topic.bytes <= maxBytes && oldest.ms >= now - maxAgeMs) break;
      topic.head++;
      topic.bytes -= oldest.data.byteLength;
      topic.dropped++;
      topic.byId.delete(oldest.id);
      for (const group of topic.groups.values()) group.pending.delete(oldest.id);
    }
    if (topic.head > 1024 && topic.head * 2 > topic.entries.length) {
      topic.entries = topic.entries.slice(topic.head);
      topic.head = 0;
    }
  }

  private forgetKeys(topic: Topic, now: number): void {
    // Keys were set in time order with one window, so the expired ones come first.
    for (const [key, { expiresAt }] of topic.keys) {
      if (expiresAt > now) break;
      topic.keys.delete(key);
    }
  }

  private waitForAppend({ topic, prefix, signal }: ReadOptions, ms: number): Promise<void> {
    if (this.waiters.size >= MAX_WAITERS) throw new CapacityError('waiting');
    return new Promise<void>((resolve) => {
      const wake = () => {
        this.waiters.delete(waiter);
        cancelTimer();
        signal?.removeEventListener('abort', wake);
        resolve();
      };
      const waiter: Waiter = {
        wants: (name) => name === topic || (prefix !== undefined && isBelow(name, prefix)),
        wake,
      };
      this.waiters.add(waiter);
      const cancelTimer = this.clock.setTimeout(wake, ms);
      signal?.addEventListener('abort', wake, { once: true });
    });
  }
}
