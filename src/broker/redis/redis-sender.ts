import { encode } from '@msgpack/msgpack';
import { ReceiversGoneError, SenderAbortedError } from '../errors.js';
import type { PipeMeta, SenderEvent, SenderSession } from '../types.js';
import { asBuffer, encodeFrame, type Frame } from './framing.js';
import type { PartyHooks, PipeContext } from './pipe-context.js';
import { Wakeup } from './wakeup.js';

/** The slowest receiver's backlog from the readers hash, or -1 when no receiver is left. */
export function backlogOf(offsets: string[], head: number): number {
  if (offsets.length === 0) return -1;
  let slowest = head;
  for (const value of offsets) slowest = Math.min(slowest, Math.max(0, Number(value)));
  return head - slowest;
}

/**
 * The sender's side of a Redis-backed pipe. Chunks go into the transfer's stream one frame at a time; the
 * append script answers with the slowest receiver's backlog, and while it exceeds the window the sender waits
 * for receivers to report progress.
 */
export class RedisSenderSession implements SenderSession {
  private readonly wakeup = new Wakeup();
  private established: boolean;
  private seq = 0;
  private offset = 0;
  private finished = false;
  private failure: Error | undefined;
  private unlisten: () => void = () => {};

  constructor(
    private readonly ctx: PipeContext,
    private readonly id: string,
    readonly connectedAtOpen: number,
    establishedAtOpen: boolean,
    private readonly onEvent: (event: SenderEvent) => void,
    private readonly hooks: PartyHooks,
  ) {
    this.established = establishedAtOpen;
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
      this.onEvent({ type: 'receiver-aborted', remaining: Number(a), receivers });
    } else if (kind === 'data' || kind === 's') {
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
        await this.wakeup.wait(options.pollMs, signal);
      }
    } finally {
      if (this.established) this.hooks.settled();
    }
  }

  async start(meta: PipeMeta): Promise<void> {
    const { scripts, keys, generation, options } = this.ctx;
    const started = await scripts.start(
      [keys.meta],
      [generation, asBuffer(encode(meta.headers)), options.ttlMs, keys.events],
    );
    if (started !== 1) throw new SenderAbortedError('The pipe ended before it started.');
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.byteLength === 0) return;
    const frame: Frame = { kind: 'data', seq: this.seq++, offset: this.offset, payload: chunk };
    this.offset += chunk.byteLength;
    let backlog = await this.append(frame, '');
    while (backlog > this.ctx.options.windowBytes) {
      await this.wakeup.wait(this.ctx.options.pollMs);
      backlog = backlogOf(await this.ctx.redis.hvals(this.ctx.keys.readers), this.offset);
    }
    if (backlog === -1) throw new ReceiversGoneError();
  }

  async end(): Promise<void> {
    const { redis, keys, scripts, generation, options } = this.ctx;
    try {
      if ((await this.append({ kind: 'end', seq: this.seq++, offset: this.offset }, '')) === -1) {
        throw new ReceiversGoneError();
      }
      // "All received": every receiver still in the pipe has read up to the end.
      for (;;) {
        const backlog = backlogOf(await redis.hvals(keys.readers), this.offset);
        if (backlog === -1) throw new ReceiversGoneError();
        if (backlog === 0) break;
        await this.wakeup.wait(options.pollMs);
      }
      await scripts.finish([keys.meta], [generation, options.ttlMs]);
    } finally {
      this.done();
    }
  }

  abort(reason?: string): void {
    if (this.finished) return;
    const frame: Frame = { kind: 'abort', seq: this.seq++, offset: this.offset, reason: reason ?? '' };
    // Whether the pipe is still waiting is Redis's to say (a receiver may have completed it a moment ago):
    // a waiting pipe just loses its sender; an established one gets the abort frame its receivers fail on.
    this.leave()
      .then((reply) => (reply === 'waiting' ? undefined : this.append(frame, 'a')))
      .catch(() => {});
    this.done();
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
      [keys.meta, keys.readers],
      ['s', this.id, generation, keys.events],
    )) as unknown[];
    return String(reply[0]);
  }

  private append(frame: Frame, state: '' | 'a'): Promise<number> {
    const { scripts, keys, generation, options } = this.ctx;
    return scripts.append(
      [keys.data(generation), keys.readers, keys.meta],
      [
        asBuffer(encodeFrame(frame)),
        this.offset,
        options.ttlMs,
        keys.events,
        options.maxStreamEntries,
        state,
      ],
    ) as Promise<number>;
  }

  private done(): void {
    if (this.finished) return;
    this.finished = true;
    this.unlisten();
    this.hooks.settled();
    this.hooks.done();
  }
}
