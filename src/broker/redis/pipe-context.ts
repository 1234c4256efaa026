import type { Cluster, Redis } from 'ioredis';
import type { LatencySink } from '../../selfheal/latency-windows.js';
import type { AppendBudget } from './append-budget.js';
import type { ScriptCalls } from './connection.js';
import type { ReadEntries } from './entry-reader.js';
import type { PipeKeys } from './keys.js';
import type { Notifier } from './notifier.js';

/** Tunables of the Redis broker that sessions need. */
export interface RedisPipeOptions {
  /** Bytes between the sender's head and the slowest receiver before the sender waits. */
  readonly windowBytes: number;
  /** Lifetime of an idle pipe's keys; every write refreshes it. */
  readonly ttlMs: number;
  /** How often a session in a transfer re-checks Redis even without a message (Pub/Sub can lose one). */
  readonly pollMs: number;
  /**
   * The same for a party waiting for its peers: rarer, since thousands may wait on one instance, and the
   * notifier wakes them all when its connection comes back (the one time messages are lost).
   */
  readonly idlePollMs: number;
  /** Stream length cap in entries: a memory bound, not flow control (a reader detects a gap). */
  readonly maxStreamEntries: number;
  /**
   * How long a party that dropped mid-transfer keeps its place for a resume (0: no resume), and how long an
   * ended transfer's last frames stay for a receiver whose connection lost what was written to it.
   */
  readonly resumeGraceMs: number;
  /**
   * What a receiver's connection may hold between the server's writes and the client (socket buffers on
   * both ends, the client's own): kept, with one window more, behind each receiver's reported position.
   */
  readonly socketBufferBytes: number;
  /** Lifetime of an instance's heartbeat key: an instance silent for this long counts as dead. */
  readonly instanceTtlMs: number;
  /** Lifetime of an ended pipe's keys (an aborted pipe's frames, a finished pipe's state). */
  readonly endedTtlMs: number;
}

/** What one session of one pipe works with. */
export interface PipeContext {
  readonly redis: Redis | Cluster;
  readonly scripts: ScriptCalls;
  /** Receivers' reads of a transfer's stream (see `EntryReader`). */
  readonly readEntries: ReadEntries;
  readonly notifier: Notifier;
  readonly keys: PipeKeys;
  readonly path: string;
  readonly receivers: number;
  readonly generation: string;
  readonly options: RedisPipeOptions;
  /** The instance's bound on appends in flight, shared by its senders. */
  readonly appendBudget: AppendBudget;
  /** Where chunk latencies go, if anywhere. */
  readonly latency: LatencySink | undefined;
  /** This instance, as the owner of the parties it serves. */
  readonly instanceId: string;
  readonly keyPrefix: string;
}

/** How a session tells its broker about its life, for the instance's limits and drain. */
export interface PartyHooks {
  /** The party's wait is over (its transfer started, or it left). */
  settled(): void;
  /** The party is done with the pipe. */
  done(): void;
  /**
   * The party's last word to Redis (a receiver's leave, which its sender waits to hear), let finish by the
   * broker's `close` before the connections go.
   */
  lastWord(work: Promise<unknown>): void;
}
