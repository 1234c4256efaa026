import type { Clock } from '../clock.js';

/**
 * The topic contract (issue 17, `docs/topic-protocol.md`). A topic keeps records that producers append
 * while no consumer is present, within retention bounds; consumer groups read them, each record going to
 * one consumer of a group, until it is acknowledged. Like the pipe contract it speaks of topics only: no
 * HTTP and no storage types.
 */

/** The retention bound of one topic (the longest matching `topics.retention` entry). */
export interface TopicBounds {
  readonly maxRecords: number;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
}

/** One record as a consumer gets it. */
export interface TopicRecord {
  /** The topic's name (namespace reads mix topics). */
  readonly topic: string;
  /** `<ms>-<seq>`, increasing within a topic (a Redis stream id). */
  readonly id: string;
  readonly data: Uint8Array;
  /** How often it was handed out, this time included (more than 1: a redelivery). */
  readonly deliveries: number;
}

/** What an append stored, or stored before under the same idempotency key. */
export interface AppendResult {
  readonly count: number;
  readonly first: string;
  readonly last: string;
  /** The key was seen within the idempotency window: nothing was stored now. */
  readonly replay: boolean;
}

export interface AppendOptions {
  readonly topic: string;
  readonly records: readonly Uint8Array[];
  readonly idempotencyKey?: string;
}

/** A topic name, or `<prefix>/*` for every topic below the prefix. */
export interface TopicSelector {
  readonly topic?: string;
  readonly prefix?: string;
}

export interface ReadOptions extends TopicSelector {
  readonly group: string;
  readonly consumer: string;
  /** At most this many records. */
  readonly count: number;
  /** Wait up to this long for a first record (0: answer at once). */
  readonly waitMs: number;
  /** Where a group that does not exist yet starts. */
  readonly start: 'earliest' | 'latest';
  /**
   * Leave out this consumer's pending records up to these ids per topic (a follow stream delivers each
   * record once per connection).
   */
  readonly deliveredUpTo?: ReadonlyMap<string, string>;
  /** Ends the wait early (the client went away). */
  readonly signal?: AbortSignal;
}

export interface AckOptions extends TopicSelector {
  readonly group: string;
  readonly records: ReadonlyArray<{ readonly topic: string; readonly id: string }>;
}

/** How a topic stands (`HEAD`). */
export interface TopicStatus {
  readonly records: number;
  readonly bytes: number;
  readonly firstId?: string;
  readonly lastId?: string;
  readonly dropped: number;
}

/**
 * What every backend's topics are built with (the route layer's config, parsed once).
 */
export interface TopicStoreOptions {
  /** The retention bound of a topic (trimmed on append and read). */
  readonly boundsOf: (topic: string) => TopicBounds;
  /** How long an idempotency key is remembered per topic. */
  readonly idempotencyWindowMs: number;
  /** A record pending on a consumer this long is handed to another consumer of the group. */
  readonly claimAfterMs: number;
  /** Topics one broker keeps at most (in memory; on Redis, topics in the namespace index). */
  readonly maxTopics: number;
  /**
   * Where record ids and ages come from (the system clock when omitted): tests of retention by age and of
   * claims run on a manual clock, on Redis too (its ids are written as `<ms>-*` from this clock).
   */
  readonly clock?: Clock;
}

/** The topics of a backend; it shares the backend's connections and owns nothing else. */
export interface TopicStore {
  /**
   * Appends records atomically with the idempotency key, trimming the topic to its bounds.
   * @throws CapacityError when a new topic would pass the broker's topic limit
   */
  append(options: AppendOptions): Promise<AppendResult>;
  /** Records for one consumer of a group: its pending ones, then stale ones claimed, then new ones. */
  read(options: ReadOptions): Promise<TopicRecord[]>;
  /** Acknowledges records; answers how many were pending. */
  ack(options: AckOptions): Promise<number>;
  status(topic: string): Promise<TopicStatus>;
  /** Releases what the store holds of its own (Redis: its blocking connections); waits end empty. */
  close(): Promise<void>;
}
