import { type Clock, systemClock } from '../../clock.js';
import type { LatencySink } from '../../selfheal/latency-windows.js';
import {
  BrokerClosedError,
  CapacityError,
  PipeBusyError,
  ReceiverCountMismatchError,
  ResumeUnsupportedError,
  SenderAbortedError,
} from '../errors.js';
import type { TopicStore, TopicStoreOptions } from '../topic-types.js';
import type {
  Broker,
  BrokerStats,
  OpenOptions,
  OpenReceiverOptions,
  OpenSenderOptions,
  PipeMeta,
  PipeStatus,
  ReceiverSession,
  SenderEvent,
  SenderSession,
} from '../types.js';
import { ChunkWindow } from './chunk-window.js';
import { MemoryTopics } from './memory-topics.js';
import { pumpWholeBody } from './whole-body-pump.js';

export interface MemoryBrokerOptions {
  /** Bytes one pipe holds for its slowest receiver before the sender waits. */
  readonly windowBytes: number;
  /** Pipes held at once (waiting or transferring). */
  readonly maxPipes: number;
  /** Parties waiting for their peers at once. */
  readonly maxWaiting: number;
  /**
   * Where chunk latencies go (`chunk`, and `ttfb` for each receiver's first chunk; for a body handed over
   * whole, `ttfb` is the set-up: from the last party's arrival to the receiver getting the body).
   */
  readonly latency?: LatencySink;
  /** Times the idle timeout of a body handed over whole (`startStream`); the system clock by default. */
  readonly clock?: Clock;
  /**
   * Makes the stream a body handed over whole passes through (`SenderSession.startStream`, offered only
   * with this option): where one request may stream another's body (a Durable Object), a native pass-through
   * keeps JS out of the byte path; `length`, when known, is the body's exact length.
   */
  readonly passThrough?: (length: number | undefined) => ReadableWritablePair<Uint8Array, Uint8Array>;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A party that left never awaits its promise; a rejection nobody awaits must not crash the process.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Rejects with the signal's reason when it aborts; the listener is removed once `promise` settles. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

interface SenderSlot {
  readonly onEvent: (event: SenderEvent) => void;
}

interface ReceiverSlot {
  readonly id: number;
}

/** One pipe's state in this process. `established` flips once, when the last party arrives. */
interface MemoryPipe {
  readonly path: string;
  readonly receivers: number;
  sender: SenderSlot | undefined;
  readonly receiverSlots: Set<ReceiverSlot>;
  established: boolean;
  /** `performance.now()` when the last party arrived. */
  establishedAt: number;
  window: ChunkWindow | undefined;
  readonly allPresent: Deferred<void>;
  readonly started: Deferred<PipeMeta>;
}

/**
 * The embedded single-process broker: a table of pipes keyed by path, each transfer through a `ChunkWindow`.
 * Every wait and every buffer is bounded; a party that leaves before the start frees its slot.
 */
export class MemoryBroker implements Broker {
  readonly resumable = false;
  private readonly pipes = new Map<string, MemoryPipe>();
  private waitingParties = 0;
  private nextReceiverId = 1;
  private closed = false;
  private topics: MemoryTopics | undefined;

  constructor(private readonly options: MemoryBrokerOptions) {}

  /** The broker's one topic store: every app over this broker shares its topics (the first options win). */
  openTopics(options: TopicStoreOptions): TopicStore {
    this.topics ??= new MemoryTopics(options);
    return this.topics;
  }

  async ready(): Promise<void> {}

  drain(): void {
    this.closed = true;
    const error = new BrokerClosedError();
    for (const pipe of [...this.pipes.values()]) {
      // Each failed party releases its own slot (and its count) when its wait rejects.
      if (!pipe.established) this.failPipe(pipe, error);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.topics?.close();
    const error = new BrokerClosedError();
    for (const pipe of this.pipes.values()) this.failPipe(pipe, error);
    this.pipes.clear();
  }

  stats(): BrokerStats {
    return { pipes: this.pipes.size, waiting: this.waitingParties };
  }

  async inspect(path: string): Promise<PipeStatus | undefined> {
    const pipe = this.pipes.get(path);
    if (!pipe) return undefined;
    return { state: pipe.established ? 'transferring' : 'waiting' };
  }

  async openSender(options: OpenSenderOptions): Promise<SenderSession> {
    // Nothing is kept for a party that dropped, so there is nothing to resume from.
    if (options.resumeAt !== undefined) throw new ResumeUnsupportedError();
    const pipe = this.claimPipe(options);
    if (pipe.sender) throw new PipeBusyError(pipe.path, 'sender-connected');
    const slot: SenderSlot = { onEvent: options.onEvent ?? (() => {}) };
    pipe.sender = slot;
    this.waitingParties += 1;
    const connectedAtOpen = pipe.receiverSlots.size;
    this.establishIfComplete(pipe);
    return this.senderSession(pipe, slot, connectedAtOpen);
  }

  async openReceiver(options: OpenReceiverOptions): Promise<ReceiverSession> {
    if (options.resumeAt !== undefined) throw new ResumeUnsupportedError();
    const pipe = this.claimPipe(options);
    if (pipe.receiverSlots.size >= pipe.receivers) throw new PipeBusyError(pipe.path, 'receivers-full');
    const slot: ReceiverSlot = { id: this.nextReceiverId++ };
    pipe.receiverSlots.add(slot);
    this.waitingParties += 1;
    pipe.sender?.onEvent({
      type: 'receiver-connected',
      connected: pipe.receiverSlots.size,
      receivers: pipe.receivers,
    });
    this.establishIfComplete(pipe);
    return this.receiverSession(pipe, slot);
  }

  /** Finds or creates the waiting pipe a new party joins, enforcing `n` agreement and the limits. */
  private claimPipe({ path, receivers }: OpenOptions): MemoryPipe {
    if (this.closed) throw new BrokerClosedError();
    if (this.waitingParties >= this.options.maxWaiting) throw new CapacityError('waiting');
    let pipe = this.pipes.get(path);
    if (pipe) {
      if (pipe.established) throw new PipeBusyError(path, 'established');
      if (pipe.receivers !== receivers) throw new ReceiverCountMismatchError(pipe.receivers, receivers);
      return pipe;
    }
    if (this.pipes.size >= this.options.maxPipes) throw new CapacityError('pipes');
    pipe = {
      path,
      receivers,
      sender: undefined,
      receiverSlots: new Set(),
      established: false,
      establishedAt: 0,
      window: undefined,
      allPresent: deferred<void>(),
      started: deferred<PipeMeta>(),
    };
    this.pipes.set(path, pipe);
    return pipe;
  }

  private establishIfComplete(pipe: MemoryPipe): void {
    if (!pipe.sender || pipe.receiverSlots.size !== pipe.receivers) return;
    pipe.established = true;
    pipe.establishedAt = performance.now();
    this.waitingParties -= 1 + pipe.receivers;
    const latency = this.options.latency;
    pipe.window = new ChunkWindow(
      [...pipe.receiverSlots].map((slot) => slot.id),
      {
        windowBytes: this.options.windowBytes,
        ...(latency && {
          onDelivered: (ms: number, first: boolean) => {
            latency.record('chunk', ms);
            if (first) latency.record('ttfb', ms);
          },
        }),
      },
    );
    pipe.allPresent.resolve();
  }

  /** Forgets a pipe once nobody waits on it or its transfer is over, so its path is free again. */
  private forget(pipe: MemoryPipe): void {
    if (this.pipes.get(pipe.path) === pipe) this.pipes.delete(pipe.path);
  }

  private failPipe(pipe: MemoryPipe, error: Error): void {
    pipe.allPresent.reject(error);
    pipe.started.reject(error);
    pipe.window?.fail(error);
    this.forget(pipe);
  }

  private senderSession(pipe: MemoryPipe, slot: SenderSlot, connectedAtOpen: number): SenderSession {
    let released = false;
    let started = false;
    const window = () => pipe.window!;
    const abort = (reason?: string) => {
      if (released) return;
      released = true;
      if (!pipe.established) return this.releaseSender(pipe, slot);
      this.failPipe(pipe, new SenderAbortedError(reason));
    };
    return {
      connectedAtOpen,
      waitForReceivers: (signal) => untilAborted(pipe.allPresent.promise, signal),
      start: async (meta) => {
        if (!pipe.established || started)
          throw new Error('start() before all receivers are present or twice');
        started = true;
        pipe.started.resolve(meta);
      },
      ...(this.options.passThrough && {
        startStream: (
          meta: PipeMeta,
          body: ReadableStream<Uint8Array>,
          length: number | undefined,
          idleMs = 0,
        ) => {
          if (started) return Promise.reject(new Error('the transfer has started already'));
          started = true;
          return this.startStream(pipe, meta, body, length, idleMs);
        },
      }),
      write: (chunk) => window().write(chunk),
      end: async () => {
        try {
          await window().end();
        } finally {
          this.forget(pipe);
        }
      },
      abort,
      // Nothing outlives a connection here: an interrupted upload is an aborted one.
      interrupt: async (reason) => abort(reason),
      release: () => {
        if (released || pipe.established) return;
        released = true;
        this.releaseSender(pipe, slot);
      },
    };
  }

  /** The body goes to the one receiver through a pass-through, whole; the window carries nothing. */
  private async startStream(
    pipe: MemoryPipe,
    meta: PipeMeta,
    body: ReadableStream<Uint8Array>,
    length: number | undefined,
    idleMs: number,
  ): Promise<void> {
    if (!pipe.established || pipe.receivers !== 1) {
      throw new Error('startStream() before all receivers are present, or with n > 1');
    }
    const pass = this.options.passThrough!(length);
    const delivered = deferred<boolean>();
    pipe.started.resolve({ ...meta, body: pass.readable, delivered: delivered.promise });
    this.options.latency?.record('ttfb', performance.now() - pipe.establishedAt);
    try {
      // Either side failing rejects with ReceiversGoneError: under workerd the two look alike from a pipeTo
      // (tried: the body's state after the pipe, the pass-through's writer after a pipe that did not abort
      // it, which then left a declared length's receiver waiting). A sender whose body failed has gone and
      // reads no transcript, so the one told is the sender whose receiver left; a stalled sender is told
      // it was idle (ClientIdleError).
      await pumpWholeBody(body, pass.writable, this.options.clock ?? systemClock, idleMs);
      delivered.resolve(true);
    } catch (error) {
      delivered.resolve(false);
      throw error;
    } finally {
      this.forget(pipe);
    }
  }

  private releaseSender(pipe: MemoryPipe, slot: SenderSlot): void {
    if (pipe.sender !== slot) return;
    pipe.sender = undefined;
    this.waitingParties -= 1;
    if (pipe.receiverSlots.size === 0) this.forget(pipe);
  }

  private receiverSession(pipe: MemoryPipe, slot: ReceiverSlot): ReceiverSession {
    let cancelled = false;
    return {
      waitForStart: (signal) => untilAborted(pipe.started.promise, signal),
      read: () => {
        if (!pipe.window) return Promise.reject(new Error('read() before the transfer started'));
        return pipe.window.read(slot.id);
      },
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        if (!pipe.established) {
          pipe.receiverSlots.delete(slot);
          this.waitingParties -= 1;
          pipe.sender?.onEvent({
            type: 'receiver-left',
            connected: pipe.receiverSlots.size,
            receivers: pipe.receivers,
          });
          if (!pipe.sender && pipe.receiverSlots.size === 0) this.forget(pipe);
          return;
        }
        const window = pipe.window!;
        if (window.removeReader(slot.id)) {
          pipe.sender?.onEvent({
            type: 'receiver-aborted',
            remaining: window.readerCount,
            receivers: pipe.receivers,
          });
        }
        if (window.readerCount === 0) this.forget(pipe);
      },
    };
  }
}
