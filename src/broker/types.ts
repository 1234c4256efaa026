/**
 * The pipe contract. A pipe is a named rendezvous between one sender and `receivers` receivers; once all are
 * present the sender's bytes stream to every receiver through a bounded window.
 *
 * The contract speaks of pipes only: no HTTP and no storage types. Every rendezvous happens inside the broker,
 * so the route layer never relies on two requests sharing memory (a Redis-backed broker may meet the sender on
 * one instance and a receiver on another; on Workers one request cannot touch another request's stream).
 */

import type { TopicStore, TopicStoreOptions } from './topic-types.js';

/** Name/value pairs the sender hands to its receivers, in order (the route layer decides which). */
export type PipeHeaders = ReadonlyArray<readonly [name: string, value: string]>;

/** What every receiver learns when the transfer starts. */
export interface PipeMeta {
  readonly headers: PipeHeaders;
  /**
   * The whole body as one stream, when the sender handed it over with `startStream`: the receiver sends it
   * on as it is instead of calling `read()`, so no JS touches the bytes (Durable Objects, issue 16).
   */
  readonly body?: ReadableStream<Uint8Array>;
  /**
   * With `body`: settles once the transfer is over, true when the receiver took the whole body (what
   * `startStream` resolves on), false when either side failed. It never rejects.
   */
  readonly delivered?: Promise<boolean>;
}

/** What a sender is told while it waits and while it sends. */
export type SenderEvent =
  /** A receiver arrived; `connected` of `receivers` are now present. */
  | { readonly type: 'receiver-connected'; readonly connected: number; readonly receivers: number }
  /** A receiver left before the transfer started; its slot is free again. */
  | { readonly type: 'receiver-left'; readonly connected: number; readonly receivers: number }
  /** A receiver dropped mid-transfer; `remaining` receivers still read. */
  | { readonly type: 'receiver-aborted'; readonly remaining: number; readonly receivers: number };

export interface OpenOptions {
  /** Normalised pipe path, e.g. `/photos/cat.jpg`. */
  readonly path: string;
  /** How many receivers the pipe has; every party of one pipe must say the same. */
  readonly receivers: number;
  /**
   * The client can resume (it said so, or it is resuming). A backend that can resume holds the place of
   * such a party for a grace period when it drops mid-transfer; any other party that drops is gone at once
   * (its receivers see a cut body, its sender is told), as when nothing can resume. Default false.
   */
  readonly resumable?: boolean;
}

export interface OpenSenderOptions extends OpenOptions {
  /** Called for every event; must not throw. */
  readonly onEvent?: (event: SenderEvent) => void;
  /**
   * Continue a running transfer whose sender dropped, from this byte offset of the body (at most the
   * committed offset `inspect` reports). `receivers` is not checked then.
   * @throws NothingToResumeError, ResumeOffsetError, ResumeUnsupportedError
   */
  readonly resumeAt?: number;
}

export interface OpenReceiverOptions extends OpenOptions {
  /**
   * Take over the slot of a receiver of a running transfer that dropped, reading from this byte offset.
   * `receivers` is not checked then.
   * @throws NothingToResumeError, ResumeOffsetError, ResumeUnsupportedError
   */
  readonly resumeAt?: number;
}

/** What `inspect` tells about a pipe without taking part in it. */
export interface PipeStatus {
  readonly state: 'waiting' | 'transferring' | 'ended';
  /** Bytes of the body the broker holds for sure: where a resumed sender continues. */
  readonly committedOffset?: number;
  /** Whether the sender has dropped and may resume. */
  readonly senderDropped?: boolean;
}

/** The sender's side of a pipe, from claiming the slot to the end of the body. */
export interface SenderSession {
  /** Receivers present when the slot was claimed. */
  readonly connectedAtOpen: number;
  /**
   * Set when this session continues a dropped sender's transfer: the offset the broker holds. The body
   * continues from there (the caller skips what it re-sends below it); `waitForReceivers` and `start` are
   * already done.
   */
  readonly resumedAt?: number;
  /** Set with `resumedAt` where the broker knows it: what the transfer's receivers were given at its start. */
  readonly resumedMeta?: PipeMeta;
  /**
   * Resolves once every receiver is present.
   * Rejects with the signal's reason when `signal` aborts (the slot stays claimed: call `release`).
   */
  waitForReceivers(signal: AbortSignal): Promise<void>;
  /** Starts the transfer: the receivers get `meta` and then the bytes. Call once, after `waitForReceivers`. */
  start(meta: PipeMeta): Promise<void>;
  /**
   * Present where the backend can hand a body to a single receiver whole, as a stream the runtime moves
   * natively (a Durable Object): instead of `start` and `write`, starts the transfer with `body`, `length`
   * bytes when known (the receiver's stream then ends in error if the body falls short). Only for a pipe
   * of one receiver. Resolves when the receiver has taken the whole body; rejects with `ReceiversGoneError`
   * when the transfer failed, whichever side failed (a failed body errors the receiver's stream; a sender
   * whose body failed has gone and reads nothing of its transcript), or with `ClientIdleError` when a read
   * of the body waited `idleMs` (0: no limit): the receiver's stream is cut and the body cancelled.
   */
  startStream?(
    meta: PipeMeta,
    body: ReadableStream<Uint8Array>,
    length: number | undefined,
    idleMs?: number,
  ): Promise<void>;
  /**
   * Appends a chunk. Resolves when the window has room again, which is how a slow receiver slows the sender.
   * Rejects with `ReceiversGoneError` when no receiver is left.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** The body is complete; resolves when every remaining receiver has read all of it. */
  end(): Promise<void>;
  /** The body failed: every receiver's read rejects with `SenderAbortedError`. Idempotent. */
  abort(reason?: string): void;
  /**
   * The upload broke off (the client's connection dropped), or a piece of it ended (`Upload-Complete: ?0`).
   * A backend that can resume commits every byte written so far and holds the transfer for a grace period
   * in which a new sender may continue it (`resumeAt`); otherwise, or after that, this is an `abort`.
   * Resolves once the drop is recorded (a sender continuing after that finds it); rejects when the bytes
   * written could not all be committed (the sender is still marked dropped, at what was committed).
   * Idempotent (a second call resolves at once).
   */
  interrupt(reason?: string): Promise<void>;
  /** The sender left before the transfer started: its slot is free again. Idempotent; no-op once started. */
  release(): void;
}

/** A receiver's side of a pipe. */
export interface ReceiverSession {
  /**
   * Resolves with the sender's metadata when the transfer starts.
   * Rejects with the signal's reason when `signal` aborts (call `cancel` to free the slot).
   */
  waitForStart(signal: AbortSignal): Promise<PipeMeta>;
  /**
   * The next chunk, or `null` once the body ended cleanly.
   * Rejects with `SenderAbortedError` when the sender failed: truncation is never silent.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * The receiver left. Before the start this frees its slot; after it, the sender is told (a backend that
   * can resume first holds the slot for a grace period in which the receiver may come back). Idempotent.
   */
  cancel(): void;
}

/** Counters a broker exposes for health and limits. */
export interface BrokerStats {
  /** Pipes waiting for parties or transferring. */
  readonly pipes: number;
  /** Parties (senders and receivers) waiting for their peers. */
  readonly waiting: number;
  /**
   * Why this broker refuses every pipe (no backend it can use, e.g. Workers without a Redis); absent while
   * it serves pipes. `/_/health` answers 503 with it, so a load balancer takes the instance out.
   */
  readonly unavailable?: string;
  /** The counts were reported by other processes, some seconds old (a Worker's Durable Objects). */
  readonly approximate?: boolean;
}

/** A pipe backend. Each backend owns its connections and resources. */
export interface Broker {
  /**
   * Whether a party that drops can resume here (`resumeAt`, `Range`): true where the broker keeps what was
   * sent (Redis), false where nothing outlives a connection (in memory). `HEAD` tells clients.
   */
  readonly resumable: boolean;
  /** Resolves when the backend can take pipes. */
  ready(): Promise<void>;
  /**
   * Shutting down gracefully: new parties are refused and waiting ones fail with `BrokerClosedError`
   * (nobody could join them any more); transfers already running go on.
   */
  drain(): void;
  /** Releases every resource; open sessions fail. */
  close(): Promise<void>;
  /**
   * Claims the sender slot of a pipe.
   * @throws PipeBusyError, ReceiverCountMismatchError, CapacityError
   */
  openSender(options: OpenSenderOptions): Promise<SenderSession>;
  /**
   * Claims one receiver slot of a pipe.
   * @throws PipeBusyError, ReceiverCountMismatchError, CapacityError
   */
  openReceiver(options: OpenReceiverOptions): Promise<ReceiverSession>;
  /** How a pipe stands, without taking part in it; `undefined` when nobody uses the path. */
  inspect(path: string): Promise<PipeStatus | undefined>;
  stats(): BrokerStats;
  /**
   * The backend's topics (issue 17, `topic-types.ts`), sharing its connections; absent where the backend
   * keeps none (the route then answers 503). The broker's `close` closes the stores it opened.
   */
  openTopics?(options: TopicStoreOptions): TopicStore;
}
