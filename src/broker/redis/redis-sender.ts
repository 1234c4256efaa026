import { encode } from '@msgpack/msgpack';
import { asPipeError, ReceiversGoneError, SenderAbortedError } from '../errors.js';
import type { PipeMeta, SenderEvent, SenderSession } from '../types.js';
import { FrameXadd } from './frame-command.js';
import { asBuffer, encodeFrameHeader, type Frame, offsetAfter } from './framing.js';
import type { PartyHooks, PipeContext } from './pipe-context.js';
import { ReapingWait } from './reap.js';
import { Wakeup } from './wakeup.js';

/** The slowest receiver's backlog from the readers hash, or -1 when no receiver is left. */
export function backlogOf(offsets: string[], head: number): number {
  if (offsets.length === 0) return -1;
  let slowest = head;
  for (const value of offsets) slowest = Math.min(slowest, Math.max(0, Number(value)));
  return head - slowest;
}

/** How often the keys' expiry is pushed forward while a transfer runs (not on every chunk). */
const TTL_REFRESH_MS = 5000;
/**
 * Chunks that arrive within one turn of the event loop are joined into one frame of up to this size (and
 * at most a quarter window, so a frame never waits on a window it cannot fit): each frame costs a stream
 * entry, a message to every receiver and per-command work in Redis and ioredis, whatever its size.
 * Measured for 1 GiB through one instance: 64 KiB frames ~360 MiB/s, 256 KiB ~460 MiB/s (node CPU
 * 2.9 → 2.3 s/GiB). Since the frames are written from the chunks as they came and read back as views
 * of the socket reads (no copies left), 1 MiB beat 256 KiB: 512 MiB through one instance, 3 interleaved
 * rounds, 331 → 398 MiB/s, instance CPU 3.00 → 2.40 s/GiB, Redis's 0.94 → 0.76; sender on one instance
 * and receiver on another 387 → 421 MiB/s (docs/benchmarks.md).
 */
const MAX_FRAME_BYTES = 1024 * 1024;

/** A data frame's header does not carry its payload (which travels as a field of its own). */
const EMPTY = new Uint8Array(0);

/** Where a resumed sender picks up: the committed offset and the next frame's sequence number. */
export interface SenderResume {
  readonly offset: number;
  readonly seq: number;
  /** What the transfer's receivers were given at its start. */
  readonly meta?: PipeMeta;
}

/**
 * The sender's side of a Redis-backed pipe. Chunks go into the transfer's stream one frame each, pipelined:
 * appends are not awaited one by one (a round trip per chunk capped a first version at ~90 MiB/s) but kept
 * in flight up to half a window. While the slowest receiver's backlog plus what is in flight exceeds the
 * window, the sender waits for receivers to report progress.
 *
 * What a receiver reports is what was written to its socket, not what its client received: socket buffers
 * on both ends hold megabytes more. So frames are trimmed only once they lie `socketBufferBytes` plus one
 * window behind the slowest receiver's reported position, and after the end the last of them stay for
 * `resumeGraceMs`: a receiver that drops anywhere, even after the last byte left the server, resumes
 * byte-exact. Redis holds at most about 2.25 windows plus `socketBufferBytes` per pipe while it runs (the
 * unread part, the retained tail, a quarter window of trimming lag), and one window plus
 * `socketBufferBytes` during the grace after its end.
 */
export class RedisSenderSession implements SenderSession {
  private readonly wakeup = new Wakeup();
  /** Waits for a receiver's news; settles receivers that dropped and did not come back in time. */
  private readonly reaping: ReapingWait;
  private established: boolean;
  private seq = 0;
  private offset = 0;
  private finished = false;
  private toldAllGone = false;
  private failure: Error | undefined;
  /** Redis's answer to the start (see `start`); a resumed sender's transfer started long ago. */
  private started: Promise<void> = Promise.resolve();
  /** Appends sent and not yet answered, oldest first, with their sizes. */
  private readonly inFlight: Array<{ reply: Promise<void>; bytes: number }> = [];
  private inFlightBytes = 0;
  /** The slowest receiver's backlog as of the latest answer. */
  private backlog = 0;
  private ttlRefreshedAt = 0;
  /** Chunks written but not yet sent, joined into the next frame. */
  private readonly pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  /** Bytes sent since the readers' positions were last asked for. */
  private sinceCheck = 0;
  /** Stream ids of the frames this session added and the offset after each, oldest first (for trimming). */
  private readonly frames: Array<{ id: string; end: number }> = [];
  private unlisten: () => void = () => {};
  private readonly frameBytes: number;
  /** Bytes kept behind the slowest receiver's reported position (see the class comment). */
  private readonly retainBytes: number;
  readonly resumedAt: number | undefined;
  readonly resumedMeta: PipeMeta | undefined;

  constructor(
    private readonly ctx: PipeContext,
    private readonly id: string,
    readonly connectedAtOpen: number,
    establishedAtOpen: boolean,
    private readonly onEvent: (event: SenderEvent) => void,
    private readonly hooks: PartyHooks,
    /** The client can resume: when its upload breaks, the transfer waits for it (see `interrupt`). */
    private readonly resumable: boolean,
    resume?: SenderResume,
  ) {
    this.established = establishedAtOpen || resume !== undefined;
    this.reaping = new ReapingWait(ctx, this.wakeup);
    this.frameBytes = Math.min(MAX_FRAME_BYTES, Math.floor(ctx.options.windowBytes / 4));
    this.retainBytes = ctx.options.windowBytes + ctx.options.socketBufferBytes;
    if (resume) {
      this.resumedAt = resume.offset;
      this.resumedMeta = resume.meta;
      this.offset = resume.offset;
      this.seq = resume.seq;
      hooks.settled();
    }
  }

  /** Binds the session to its pipe's channel (the subscription made before the slot was claimed). */
  attach(unlisten: () => void): void {
    this.unlisten = unlisten;
  }

  /** The broker is draining or closing: a wait still under way fails with `error`. */
  fail(error: Error): void {
    this.failure = error;
    this.wakeup.ring();
  }

  /** A message on the pipe's channel. */
  onMessage(message: string): void {
    const [kind, a, b] = message.split(':');
    const receivers = this.ctx.receivers;
    if (kind === 'r') {
      this.onEvent({ type: 'receiver-connected', connected: Number(a), receivers });
      if (b === '1') this.established = true;
    } else if (kind === 'rleft') {
      this.onEvent({ type: 'receiver-left', connected: Number(a), receivers });
    } else if (kind === 'raborted') {
      this.receiverAborted(Number(a));
    } else if (kind === 'data' || kind === 's' || kind === 'sdropped' || kind === 'sresumed') {
      return;
    }
    this.wakeup.ring();
  }

  async waitForReceivers(signal: AbortSignal): Promise<void> {
    const { redis, keys, generation, options } = this.ctx;
    try {
      for (;;) {
        if (this.established) return;
        const [state, gen] = await redis.hmget(keys.meta, 'state', 'gen');
        if (gen !== generation) throw new SenderAbortedError('The pipe expired before the receivers came.');
        if (state === 'e' || state === 's') {
          this.established = true;
          return;
        }
        // Draining: a pipe nobody else can join any more fails; an established one goes on.
        if (this.failure) throw this.failure;
        await this.wakeup.wait(options.idlePollMs, signal);
      }
    } catch (error) {
      throw error === signal.reason ? error : asPipeError(error);
    } finally {
      if (this.established) this.hooks.settled();
    }
  }

  /**
   * Sends the start without waiting for Redis's answer: the first frames follow it on the same connection,
   * so a receiver woken by the start message mostly finds them there already instead of waiting for the
   * next message (a round trip less for a small transfer). A refused start fails the next write, and the
   * end is committed only after the start was.
   */
  async start(meta: PipeMeta): Promise<void> {
    const { scripts, keys, generation, options } = this.ctx;
    this.started = scripts
      .start([keys.meta], [generation, asBuffer(encode(meta.headers)), options.ttlMs, keys.events])
      .then(
        (started) => {
          if (started !== 1) throw new SenderAbortedError('The pipe ended before it started.');
        },
        (error: unknown) => {
          throw asPipeError(error);
        },
      );
    this.started.catch((error: Error) => {
      this.failure ??= error;
      this.wakeup.ring();
    });
  }

  async write(chunk: Uint8Array): Promise<void> {
    try {
      await this.writeChunk(chunk);
    } catch (error) {
      // Nobody is left to read: the transfer is over, and its path must be free again (left as it was, the
      // pipe would stay "established" until its keys expire, and this instance would count it for ever).
      // The sender hears of it only once the path is free, so a new transfer it starts is not refused.
      if (error instanceof ReceiversGoneError) {
        this.receiverAborted(0);
        await this.aborted(error.message);
      }
      throw asPipeError(error);
    }
  }

  /**
   * Tells of a receiver that aborted. The last one is told once, from whichever comes first: its Pub/Sub
   * message, or the failed write that found nobody left (the message may land after the session stopped
   * listening, and the sender's transcript must not depend on that race).
   */
  private receiverAborted(remaining: number): void {
    if (remaining === 0) {
      if (this.toldAllGone) return;
      this.toldAllGone = true;
    }
    this.onEvent({ type: 'receiver-aborted', remaining, receivers: this.ctx.receivers });
  }

  private async writeChunk(chunk: Uint8Array): Promise<void> {
    // A chunk larger than a frame goes in frame-sized pieces (Bun hands over a 1 MiB upload as one chunk):
    // frames stay within `frameBytes`, which is what bounds a receiver's read batch in bytes.
    for (let at = 0; at < chunk.byteLength; at += this.frameBytes) {
      const piece = chunk.byteLength <= this.frameBytes ? chunk : chunk.subarray(at, at + this.frameBytes);
      await this.writePiece(piece);
    }
  }

  private async writePiece(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    // The instance's budget is taken before the bytes are: they are held from here until Redis answers.
    const budget = this.ctx.appendBudget;
    await budget.acquire(chunk.byteLength);
    if (this.finished || this.failure) {
      budget.give(chunk.byteLength);
      throw this.failure ?? new SenderAbortedError('The transfer is over.');
    }
    if (this.pendingBytes + chunk.byteLength > this.frameBytes) this.flush();
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= this.frameBytes) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    const window = this.ctx.options.windowBytes;
    while (this.inFlightBytes > window / 2 && this.inFlight.length > 0) await this.inFlight.shift()!.reply;
    while (!this.failure && this.backlog + this.inFlightBytes + this.pendingBytes > window) {
      await this.reaping.wait();
      this.backlog = backlogOf(
        await this.ctx.redis.hvals(this.ctx.keys.readers),
        this.offset - this.inFlightBytes,
      );
      if (this.backlog === -1) this.failure = new ReceiversGoneError();
    }
    if (this.failure) throw this.failure;
  }

  /**
   * Sends what is pending as one frame, without waiting for the answer. Data frames go as plain pipelined
   * XADD + PUBLISH (no script: passing the payload through Lua cost Redis one more copy of every byte); the
   * readers' positions come back with an HVALS every quarter window, which is all flow control needs.
   */
  private flush(): void {
    if (this.pendingBytes === 0 || this.finished) return;
    const pieces = this.pending.slice();
    const bytes = this.pendingBytes;
    this.pending.length = 0;
    this.pendingBytes = 0;
    const frame: Frame = {
      kind: 'data',
      seq: this.seq++,
      offset: this.offset,
      payload: EMPTY,
      sentAt: Date.now(),
    };
    this.offset += bytes;
    const { redis, keys, generation, options } = this.ctx;
    const head = this.offset;
    const command = new FrameXadd(
      keys.data(generation),
      options.maxStreamEntries,
      encodeFrameHeader(frame),
      pieces,
      bytes,
    );
    redis.sendCommand(command);
    const added = command.promise as Promise<string | null>;
    redis.publish(keys.events, 'data').catch(() => {});
    this.refreshTtl();
    this.sinceCheck += bytes;
    const recorded = added.then((id) => {
      if (id) this.frames.push({ id, end: head });
    });
    let reply: Promise<unknown> = recorded;
    if (this.sinceCheck >= options.windowBytes / 4) {
      this.sinceCheck = 0;
      const owner = redis.hget(keys.meta, 'sender');
      reply = Promise.all([redis.hvals(keys.readers), owner, recorded]).then(([offsets, sender]) => {
        // Another sender took over (this instance was taken for dead): stop before frames interleave.
        if (sender !== this.id) this.failure ??= new SenderAbortedError('Another sender took over the pipe.');
        this.backlog = backlogOf(offsets, head);
        if (this.backlog === -1) this.failure ??= new ReceiversGoneError();
        else this.trim(head - this.backlog - this.retainBytes);
      });
    }
    const budget = this.ctx.appendBudget;
    const settled = Promise.all([added, reply]).then(
      () => {
        this.inFlightBytes -= bytes;
        budget.give(bytes);
      },
      (error: Error) => {
        this.inFlightBytes -= bytes;
        budget.give(bytes);
        this.failure ??= error;
      },
    );
    this.inFlight.push({ reply: settled, bytes });
    this.inFlightBytes += bytes;
  }

  /**
   * Deletes the frames that end at or before `offset` (fire and forget). MINID keeps every entry from the
   * first frame still needed; `~` lets Redis trim whole internal nodes only, which may keep a little more.
   */
  private trim(offset: number): void {
    let drop = 0;
    while (drop < this.frames.length - 1 && this.frames[drop]!.end <= offset) drop += 1;
    if (drop === 0) return;
    const keep = this.frames[drop]!.id;
    this.frames.splice(0, drop);
    const { redis, keys, generation } = this.ctx;
    redis.xtrim(keys.data(generation), 'MINID', '~', keep).catch(() => {});
  }

  /**
   * Pushes the keys' expiry forward every few seconds while the transfer runs. At the first frame only the
   * stream's: it was just created, and the scripts that opened and started the pipe set the others' (three
   * commands fewer for every small transfer).
   */
  private refreshTtl(): void {
    const now = Date.now();
    if (now - this.ttlRefreshedAt < TTL_REFRESH_MS) return;
    const { redis, keys, generation, options } = this.ctx;
    const data = keys.data(generation);
    const stale = this.ttlRefreshedAt === 0 ? [data] : [data, keys.readers, keys.owners, keys.meta];
    this.ttlRefreshedAt = now;
    for (const key of stale) redis.pexpire(key, options.ttlMs).catch(() => {});
  }

  /** Waits for every append in flight. */
  private async settleInFlight(): Promise<void> {
    this.flush();
    while (this.inFlight.length > 0) await this.inFlight.shift()!.reply;
    if (this.failure) throw this.failure;
  }

  async end(): Promise<void> {
    const { redis, keys, scripts, generation, options } = this.ctx;
    let endCommitted = false;
    try {
      // The end frame follows the last data frames on the same connection without waiting for their
      // answers (one round trip less per transfer); if one of them failed, the seq gap fails the readers.
      this.flush();
      await this.started;
      // Rings from before the end frame existed (a receiver joining, progress through the data) say nothing
      // about who has read it; a ring from now on may, and is remembered for the wait below.
      this.wakeup.forget();
      const endFrame: Frame = { kind: 'end', seq: this.seq++, offset: this.offset };
      const ended = this.append(endFrame, '');
      ended.catch(() => {}); // awaited below, unless a data frame failed first
      await this.settleInFlight();
      const reply = await ended;
      if (reply === -2) throw new SenderAbortedError('Another sender took over the pipe.');
      if (reply === -1) throw new ReceiversGoneError();
      endCommitted = true;
      // "All received": every receiver still in the pipe has read up to the end frame, which counts as one
      // more byte (so the data is not deleted under a receiver that has yet to read that frame). The end's
      // own reply is the first look (its script read the receivers' offsets): one round trip less.
      let backlog = reply;
      while (backlog !== 0) {
        await this.reaping.wait();
        backlog = backlogOf(await redis.hvals(keys.readers), offsetAfter(endFrame));
        if (backlog === -1) throw new ReceiversGoneError();
      }
      // Every receiver was written everything, which is not that every client received it: the last frames
      // stay for the grace period, for a receiver whose connection lost what its socket buffers held.
      this.trim(this.offset - this.retainBytes);
      await scripts.finish(
        [keys.meta, keys.readers, keys.owners, keys.data(generation)],
        [generation, options.endedTtlMs, options.resumeGraceMs],
      );
    } catch (error) {
      if (error instanceof ReceiversGoneError) this.receiverAborted(0);
      // Without a committed end frame the receivers must not wait for one: leave an abort frame (it is a
      // no-op if another sender owns the pipe now).
      if (!endCommitted) {
        this.append(
          { kind: 'abort', seq: this.seq++, offset: this.offset, reason: 'The transfer failed.' },
          'a',
        ).then(undefined, () => {});
      } else if (error instanceof ReceiversGoneError) {
        // Every byte is committed but the last receivers left before reading it all: the transfer is over
        // (the path is free), and its tail stays for the grace period like a finished one's.
        scripts
          .finish(
            [keys.meta, keys.readers, keys.owners, keys.data(generation)],
            [generation, options.endedTtlMs, options.resumeGraceMs],
          )
          .catch(() => {});
      }
      throw asPipeError(error);
    } finally {
      this.done();
    }
  }

  abort(reason?: string): void {
    void this.aborted(reason);
  }

  /** `abort`, resolving once Redis has it (the path is free then). */
  private async aborted(reason?: string): Promise<void> {
    if (this.finished) return;
    const frame: Frame = { kind: 'abort', seq: this.seq++, offset: this.offset, reason: reason ?? '' };
    this.done();
    // Whether the pipe is still waiting is Redis's to say (a receiver may have completed it a moment ago):
    // a waiting pipe just loses its sender; an established one gets the abort frame its receivers fail on.
    try {
      if ((await this.leave()) !== 'waiting') await this.append(frame, 'a');
    } catch {
      // Redis failed: the keys expire; the receivers' reads fail on their own.
    }
  }

  interrupt(reason?: string): Promise<void> {
    if (this.finished) return Promise.resolve();
    // A client that did not say it can resume will not come back (a plain curl whose upload died): its
    // receivers are cut at once instead of waiting the grace period out.
    if (this.ctx.options.resumeGraceMs === 0 || !this.resumable) return this.aborted(reason);
    // What the client sent before it dropped is committed first, the bytes not yet framed included (sent
    // here, before `done` drops them): a resumed sender, or the next piece of a body sent in pieces,
    // continues from there.
    this.flush();
    const { scripts, keys, generation } = this.ctx;
    const committed = this.settleInFlight();
    this.done();
    // Even if an append failed, the sender is marked dropped: resumable, or settled after the grace period.
    return committed
      .then(
        () => undefined,
        (error: unknown) => error,
      )
      .then(async (failed) => {
        await scripts.drop([keys.meta, keys.owners], ['s', this.id, generation, keys.events]);
        if (failed) throw asPipeError(failed);
      });
  }

  release(): void {
    if (this.finished) return;
    // A no-op in Redis once the pipe is established (the script checks): then only `abort` ends it.
    this.leave().catch(() => {});
    this.done();
  }

  private async leave(): Promise<string> {
    const { scripts, keys, generation } = this.ctx;
    const reply = (await scripts.leave(
      [keys.meta, keys.readers, keys.owners],
      ['s', this.id, generation, keys.events],
    )) as unknown[];
    return String(reply[0]);
  }

  private append(frame: Frame, state: '' | 'a'): Promise<number> {
    const { scripts, keys, generation, options } = this.ctx;
    const now = Date.now();
    const refreshTtl = now - this.ttlRefreshedAt >= TTL_REFRESH_MS || frame.kind !== 'data';
    if (refreshTtl) this.ttlRefreshedAt = now;
    return scripts.append(
      [keys.data(generation), keys.readers, keys.meta, keys.owners],
      [
        asBuffer(encodeFrameHeader(frame)),
        frame.kind === 'data' ? asBuffer(frame.payload) : '',
        offsetAfter(frame),
        refreshTtl ? options.ttlMs : '',
        keys.events,
        options.maxStreamEntries,
        state,
        options.endedTtlMs,
        generation,
        this.id,
      ],
    ) as Promise<number>;
  }

  private done(): void {
    if (this.finished) return;
    this.finished = true;
    // Bytes taken from the body that will never be sent give their budget back (flush sends nothing now).
    this.ctx.appendBudget.give(this.pendingBytes);
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.unlisten();
    this.hooks.settled();
    this.hooks.done();
  }
}
