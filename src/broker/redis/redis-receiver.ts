import { decode } from '@msgpack/msgpack';
import { SenderAbortedError } from '../errors.js';
import type { PipeHeaders, PipeMeta, ReceiverSession } from '../types.js';
import { decodeFrame } from './framing.js';
import type { PartyHooks, PipeContext } from './pipe-context.js';
import { Wakeup } from './wakeup.js';

const EMPTY = new Uint8Array(0);

/** A field of a stream entry (`[name, value, name, value, ...]`). */
function fieldOf(fields: Buffer[], name: string): Uint8Array {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === name) return fields[i + 1]!;
  return EMPTY;
}

/** Frames fetched per round trip: enough to keep a fast receiver busy while the next fetch is under way. */
const FETCH_COUNT = 64;

/** A chunk was trimmed from the stream before this receiver read it: data is missing, so the read fails. */
export class StreamGapError extends SenderAbortedError {
  constructor(expected: number, got: number) {
    super(
      `Data was lost in the broker (expected chunk ${expected}, got ${got}); the transfer cannot continue.`,
    );
  }
}

/**
 * A receiver's side of a Redis-backed pipe. Reads the transfer's stream in batches after its last entry id,
 * checks the frames' sequence numbers (a trimmed chunk is a loud error, never a silent hole) and reports its
 * progress to the readers hash every quarter window, which is what lets the sender go on.
 */
export class RedisReceiverSession implements ReceiverSession {
  private readonly wakeup = new Wakeup();
  private readonly queue: Uint8Array[] = [];
  private lastId: string | undefined;
  private expectedSeq = 0;
  private bytesRead = 0;
  private reported = 0;
  private ended = false;
  private failure: Error | undefined;
  private left = false;
  private done = false;
  private closedBy: Error | undefined;
  private unlisten: () => void = () => {};

  constructor(
    private readonly ctx: PipeContext,
    private readonly id: string,
    private readonly hooks: PartyHooks,
  ) {}

  /** The broker is draining or closing: a wait for the start still under way fails with `error`. */
  fail(error: Error): void {
    this.closedBy = error;
    this.wakeup.ring();
  }

  attach(unlisten: () => void): void {
    this.unlisten = unlisten;
  }

  onMessage(message: string): void {
    if (message.startsWith('r:') || message.startsWith('rleft:') || message === 'progress') return;
    this.wakeup.ring();
  }

  async waitForStart(signal: AbortSignal): Promise<PipeMeta> {
    const { redis, keys, generation, options } = this.ctx;
    for (;;) {
      const [state, gen, headers] = await redis.hmgetBuffer(keys.meta, 'state', 'gen', 'headers');
      const current = state?.toString();
      if (gen?.toString() === generation && current === 's' && headers) {
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
      await this.wakeup.wait(options.pollMs, signal);
    }
  }

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.failure) throw this.failure;
      const chunk = this.queue.shift();
      if (chunk) {
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
      if (!(await this.fetch())) await this.wakeup.wait(this.ctx.options.pollMs);
    }
  }

  cancel(): void {
    if (this.left || this.ended) return;
    const { scripts, keys, generation } = this.ctx;
    scripts.leave([keys.meta, keys.readers], ['r', this.id, generation, keys.events]).catch(() => {});
    this.left = true;
    this.finish();
  }

  /** Fetches the next frames after the last one read; false when there were none yet. */
  private async fetch(): Promise<boolean> {
    const { redis, keys, generation } = this.ctx;
    const start = this.lastId === undefined ? '-' : `(${this.lastId}`;
    const entries = await redis.xrangeBuffer(keys.data(generation), start, '+', 'COUNT', FETCH_COUNT);
    for (const [id, fields] of entries) {
      this.lastId = id.toString();
      const frame = decodeFrame(fieldOf(fields, 'h'), fieldOf(fields, 'p'));
      if (frame.seq !== this.expectedSeq) {
        this.failure = new StreamGapError(this.expectedSeq, frame.seq);
        break;
      }
      this.expectedSeq += 1;
      if (frame.kind === 'data') this.queue.push(frame.payload);
      else if (frame.kind === 'end') this.ended = true;
      else this.failure = new SenderAbortedError(frame.reason || undefined);
    }
    if (entries.length === 0 && this.lastId !== undefined) {
      // Nothing new; if the stream itself is gone (expired), this transfer cannot finish.
      if ((await redis.exists(keys.data(generation))) === 0)
        this.failure = new SenderAbortedError('The transfer expired.');
    }
    return entries.length > 0;
  }

  /** Tells the sender how far this receiver has read (fire and forget: ordered on the connection). */
  private report(): void {
    if (this.reported === this.bytesRead && !this.ended) return;
    this.reported = this.bytesRead;
    const { scripts, keys } = this.ctx;
    scripts.progress([keys.readers], [this.id, this.bytesRead, keys.events]).catch(() => {});
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.unlisten();
    this.hooks.settled();
    this.hooks.done();
  }
}
