import { decode } from '@msgpack/msgpack';
import { asPipeError, ResumeOffsetError, SenderAbortedError } from '../errors.js';
import type { PipeHeaders, PipeMeta, ReceiverSession } from '../types.js';
import { decodeFrame } from './framing.js';
import type { PartyHooks, PipeContext } from './pipe-context.js';
import { ReapingWait } from './reap.js';
import { Wakeup } from './wakeup.js';

/**
 * Frames fetched per round trip (the next fetch goes out when the batch is handed out): a batch of up to 4
 * frames of 1 MiB is a bounded buffer per receiver, the 4 MiB that 16 frames of 256 KiB were before frames
 * grew (see redis-sender.ts). Against 16, 4 moved 512 MiB through one instance with less CPU (2.40 s/GiB
 * against 2.86, 3 interleaved rounds) and no slower between two instances.
 */
const FETCH_COUNT = 4;

/** Pipe messages a receiver has no need to wake for. */
const IGNORED_MESSAGE = /^(?:r:|rleft:|s:|progress$)/;

/** The sender's start message: `start:<generation>:<headers>` (see `startScript`). */
const START_MESSAGE = 'start:';

/** A frame's header is decoded apart from its payload, which stays in the pieces it was read in. */
const EMPTY = new Uint8Array(0);

function bytesOf(pieces: readonly Uint8Array[]): number {
  let sum = 0;
  for (const piece of pieces) sum += piece.byteLength;
  return sum;
}

/**
 * How long a receiver cancelled with everything handed out waits for the end frame to follow (it usually
 * does within a round trip). A resume of that receiver waits this long for its slot too.
 */
export const END_AFTER_CANCEL_MS = 1000;

/** A chunk was trimmed from the stream before this receiver read it: data is missing, so the read fails. */
export class StreamGapError extends SenderAbortedError {
  constructor(expected: number, got: number) {
    super(
      `Data was lost in the broker (expected chunk ${expected}, got ${got}); the transfer cannot continue.`,
    );
  }
}

/** Where a resumed receiver picks up: the byte offset it asked for and the headers of the transfer. */
export interface ReceiverResume {
  readonly offset: number;
  readonly meta: PipeMeta;
}

/**
 * A receiver's side of a Redis-backed pipe. Reads the transfer's stream in batches after its last entry id,
 * checks the frames' sequence numbers and offsets (a trimmed chunk is a loud error, never a silent hole) and
 * reports its progress to the readers hash every quarter window, which is what lets the sender go on.
 */
export class RedisReceiverSession implements ReceiverSession {
  private readonly wakeup = new Wakeup();
  /** Waits for the next frame; settles a sender that dropped and did not resume in time (its abort frame). */
  private readonly reaping: ReapingWait;
  private readonly queue: Uint8Array[] = [];
  private lastId: string | undefined;
  /** Sequence number of the next frame; -1 until a resumed receiver has found its first frame. */
  private expectedSeq = 0;
  /** Offset of the next byte to fetch from the stream. */
  private fetchedTo = 0;
  private bytesRead = 0;
  private reported = 0;
  private started = false;
  /** It has handed out at least one chunk (a session that never did has nothing to finish). */
  private delivered = false;
  private ended = false;
  private failure: Error | undefined;
  private left = false;
  private done = false;
  private closedBy: Error | undefined;
  private fetching: Promise<boolean> | undefined;
  /** The headers the start message brought (this generation's), before the receiver asked for them. */
  private startHeaders: Buffer | undefined;
  private unlisten: () => void = () => {};

  constructor(
    private readonly ctx: PipeContext,
    private readonly id: string,
    private readonly hooks: PartyHooks,
    /** The client can resume: when it drops mid-transfer its place is held for it (see `leaveOrDrop`). */
    private readonly resumable: boolean,
    private readonly resume?: ReceiverResume,
  ) {
    this.reaping = new ReapingWait(ctx, this.wakeup);
    if (resume) {
      this.expectedSeq = -1;
      this.fetchedTo = resume.offset;
      this.bytesRead = resume.offset;
      this.reported = resume.offset;
    }
  }

  /** The broker is draining or closing: a wait for the start still under way fails with `error`. */
  fail(error: Error): void {
    this.closedBy = error;
    this.wakeup.ring();
  }

  attach(unlisten: () => void): void {
    this.unlisten = unlisten;
  }

  onMessage(message: string): void {
    // Other receivers coming and going, their progress, and the sender joining (the start message follows)
    // change nothing this receiver waits for.
    if (IGNORED_MESSAGE.test(message)) return;
    if (message.startsWith(START_MESSAGE)) {
      // `start:<generation>:<headers>`: the headers' bytes as latin1 (see Notifier).
      const at = message.indexOf(':', START_MESSAGE.length);
      if (at > 0 && message.slice(START_MESSAGE.length, at) === this.ctx.generation)
        this.startHeaders = Buffer.from(message.slice(at + 1), 'latin1');
    }
    this.wakeup.ring();
  }

  async waitForStart(signal: AbortSignal): Promise<PipeMeta> {
    try {
      return await this.untilStarted(signal);
    } catch (error) {
      throw error === signal.reason ? error : asPipeError(error);
    }
  }

  private async untilStarted(signal: AbortSignal): Promise<PipeMeta> {
    const { redis, keys, generation, options } = this.ctx;
    if (this.resume) {
      this.started = true;
      this.hooks.settled();
      return this.resume.meta;
    }
    for (;;) {
      if (this.startHeaders) {
        this.started = true;
        this.hooks.settled();
        return { headers: decode(this.startHeaders) as PipeHeaders };
      }
      const [state, gen, headers] = await redis.hmgetBuffer(keys.meta, 'state', 'gen', 'headers');
      const current = state?.toString();
      if (gen?.toString() === generation && current === 's' && headers) {
        this.started = true;
        this.hooks.settled();
        return { headers: decode(headers) as PipeHeaders };
      }
      // The pipe is over for this receiver: it is done with it.
      const over =
        gen?.toString() !== generation
          ? 'The pipe is gone.'
          : current === 'a'
            ? 'The sender aborted the transfer.'
            : current === 'f'
              ? 'The transfer ended without this receiver.'
              : undefined;
      if (over) {
        this.left = true;
        this.finish();
        throw new SenderAbortedError(over);
      }
      // Draining: a pipe still waiting for parties fails; an established one is about to start.
      if (this.closedBy && current === 'w') throw this.closedBy;
      await this.wakeup.wait(options.idlePollMs, signal);
    }
  }

  async read(): Promise<Uint8Array | null> {
    try {
      return await this.next();
    } catch (error) {
      throw asPipeError(error);
    }
  }

  private async next(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.failure) throw this.failure;
      const chunk = this.queue.shift();
      if (chunk) {
        this.delivered = true;
        this.bytesRead += chunk.byteLength;
        if (this.bytesRead - this.reported >= this.ctx.options.windowBytes / 4) this.report();
        return chunk;
      }
      if (this.ended) {
        this.report();
        this.finish();
        return null;
      }
      if (this.left) throw new SenderAbortedError('This receiver has left the pipe.');
      if (!(await this.fetch())) await this.reaping.wait();
    }
  }

  cancel(): void {
    if (this.left || this.done) return;
    if (this.started && this.delivered && !this.failure && this.queue.length === 0) {
      // Everything handed out: a runtime may stop pulling once it has written a declared length, before
      // the end frame was read (Deno does). One more look tells a finished receiver from one that dropped.
      this.left = true;
      this.hooks.lastWord(
        this.awaitEndAfterCancel().then((finished) => {
          if (!finished) return this.leaveOrDrop();
          this.report();
          this.finish();
        }),
      );
      return;
    }
    this.left = true;
    this.hooks.lastWord(this.leaveOrDrop());
  }

  /**
   * After a cancel with everything handed out: whether the next frame is the end. It may not be written yet
   * (the client had all the bytes it was promised before the sender committed the end), so this waits a
   * little for it; more data instead means the receiver really left early.
   */
  private async awaitEndAfterCancel(): Promise<boolean> {
    const deadline = Date.now() + END_AFTER_CANCEL_MS;
    try {
      for (;;) {
        if (this.ended || this.failure || this.queue.length > 0) break;
        if (!(await this.fetch())) {
          if (Date.now() >= deadline) break;
          await this.wakeup.wait(Math.min(this.ctx.options.pollMs, END_AFTER_CANCEL_MS));
        }
      }
    } catch {
      return false;
    }
    return this.ended && !this.failure && this.queue.length === 0;
  }

  /**
   * The receiver left without reading the whole body: one that can resume and dropped mid-transfer keeps its
   * place for a resume (the end frame fetched but not all of it delivered counts as that); one that never
   * started, or that did not say it can resume, leaves, and the sender hears of it at once, as in
   * piping-server (a plain curl that died does not come back; holding its place would stall the sender).
   */
  private leaveOrDrop(): Promise<unknown> {
    const { scripts, keys, generation, options } = this.ctx;
    const told =
      this.started && this.resumable && options.resumeGraceMs > 0
        ? scripts.drop([keys.meta, keys.owners], ['r', this.id, generation, keys.events])
        : scripts.leave([keys.meta, keys.readers, keys.owners], ['r', this.id, generation, keys.events]);
    this.finish();
    return told.catch(() => {});
  }

  /** Fetches the next frames after the last one read; false when there were none yet. */
  private fetch(): Promise<boolean> {
    // One fetch at a time: two from the same last id would both see the same frames (a read and a cancel
    // can overlap), and the second would take them for a gap.
    this.fetching ??= this.fetchOnce().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async fetchOnce(): Promise<boolean> {
    const { redis, keys, generation } = this.ctx;
    const start = this.lastId === undefined ? '-' : `(${this.lastId}`;
    const entries = await this.ctx.readEntries(keys.data(generation), start, FETCH_COUNT);
    for (const { id, header, payload } of entries) {
      this.lastId = id;
      const frame = decodeFrame(header, EMPTY);
      if (this.expectedSeq === -1) {
        // A resumed receiver's first frame must hold its offset, or that byte has been trimmed meanwhile.
        if (frame.offset > this.fetchedTo) {
          this.failure = new ResumeOffsetError(this.fetchedTo, frame.offset, frame.offset);
          break;
        }
        this.expectedSeq = frame.seq;
      }
      if (frame.seq !== this.expectedSeq || frame.offset > this.fetchedTo) {
        this.failure = new StreamGapError(this.expectedSeq, frame.seq);
        break;
      }
      this.expectedSeq += 1;
      if (frame.kind === 'data') {
        const end = frame.offset + bytesOf(payload);
        if (end <= this.fetchedTo) continue;
        // Frames a resumed receiver reads again are old news: only fresh deliveries are latencies.
        if (!this.resume) this.observe(frame.sentAt, frame.seq === 0);
        // The payload goes out in the pieces it arrived in; a resumed receiver skips what it had.
        let skip = this.fetchedTo - frame.offset;
        for (const piece of payload) {
          if (skip >= piece.byteLength) {
            skip -= piece.byteLength;
            continue;
          }
          this.queue.push(skip > 0 ? piece.subarray(skip) : piece);
          skip = 0;
        }
        this.fetchedTo = end;
      } else if (frame.kind === 'end') this.ended = true;
      else this.failure = new SenderAbortedError(frame.reason || undefined);
    }
    if (entries.length === 0 && this.lastId !== undefined) {
      // Nothing new; if the stream itself is gone (expired), this transfer cannot finish.
      if ((await redis.exists(keys.data(generation))) === 0)
        this.failure = new SenderAbortedError('The transfer expired.');
    }
    return entries.length > 0;
  }

  /**
   * A frame's time through the broker: the sender's clock at `XADD` to this receiver's at `XRANGE`. Across
   * instances it includes their clock skew (NTP keeps that to a millisecond or so; negatives count as 0).
   */
  private observe(sentAt: number | undefined, first: boolean): void {
    const latency = this.ctx.latency;
    if (!latency || sentAt === undefined) return;
    const ms = Math.max(0, Date.now() - sentAt);
    latency.record('chunk', ms);
    if (first) latency.record('ttfb', ms);
  }

  /**
   * Tells the sender how far this receiver has read (fire and forget: ordered on the connection). Having
   * read the end frame counts as one byte more: then the sender may delete the data.
   */
  private report(): void {
    const position = this.ended ? this.bytesRead + 1 : this.bytesRead;
    if (this.reported === position) return;
    this.reported = position;
    const { scripts, keys } = this.ctx;
    scripts.progress([keys.readers], [this.id, position, keys.events]).catch(() => {});
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.unlisten();
    this.hooks.settled();
    this.hooks.done();
  }
}
