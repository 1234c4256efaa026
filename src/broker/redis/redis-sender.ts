import { encode } from '@msgpack/msgpack';
import { ReceiversGoneError, SenderAbortedError } from '../errors.js';
import type { PipeMeta, SenderEvent, SenderSession } from '../types.js';
import { asBuffer, encodeFrameHeader, type Frame } from './framing.js';
import type { PartyHooks, PipeContext } from './pipe-context.js';
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
 * Chunks that arrive within one turn of the event loop are joined into one frame of up to this size: each
 * frame costs a script run, a stream entry and a message to every receiver, whatever its size.
 */
const FRAME_BYTES = 64 * 1024;

/**
 * The sender's side of a Redis-backed pipe. Chunks go into the transfer's stream one frame each, pipelined:
 * appends are not awaited one by one (a round trip per chunk capped a first version at ~90 MiB/s) but kept
 * in flight up to half a window. Each append answers with the slowest receiver's backlog; while backlog plus
 * what is in flight exceeds the window, the sender waits for receivers to report progress.
 */
export class RedisSenderSession implements SenderSession {
  private readonly wakeup = new Wakeup();
  private established: boolean;
  private seq = 0;
  private offset = 0;
  private finished = false;
  private failure: Error | undefined;
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
    if (this.failure) throw this.failure;
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= FRAME_BYTES) this.flush();
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
      await this.wakeup.wait(this.ctx.options.pollMs);
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
    const payload =
      this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const bytes = this.pendingBytes;
    this.pending.length = 0;
    this.pendingBytes = 0;
    const frame: Frame = { kind: 'data', seq: this.seq++, offset: this.offset, payload };
    this.offset += bytes;
    const { redis, keys, generation, options } = this.ctx;
    const dataKey = keys.data(generation);
    const head = this.offset;
    const added = redis.xadd(
      dataKey,
      'MAXLEN',
      '~',
      options.maxStreamEntries,
      '*',
      'h',
      asBuffer(encodeFrameHeader(frame)),
      'p',
      asBuffer(payload),
    );
    redis.publish(keys.events, 'data').catch(() => {});
    this.refreshTtl();
    this.sinceCheck += bytes;
    let reply: Promise<unknown> = added;
    if (this.sinceCheck >= options.windowBytes / 4) {
      this.sinceCheck = 0;
      reply = redis.hvals(keys.readers).then((offsets) => {
        this.backlog = backlogOf(offsets, head);
        if (this.backlog === -1) this.failure ??= new ReceiversGoneError();
      });
    }
    const settled = Promise.all([added, reply]).then(
      () => {
        this.inFlightBytes -= bytes;
      },
      (error: Error) => {
        this.inFlightBytes -= bytes;
        this.failure ??= error;
      },
    );
    this.inFlight.push({ reply: settled, bytes });
    this.inFlightBytes += bytes;
  }

  /** Pushes the keys' expiry forward every few seconds while the transfer runs. */
  private refreshTtl(): void {
    const now = Date.now();
    if (now - this.ttlRefreshedAt < TTL_REFRESH_MS) return;
    this.ttlRefreshedAt = now;
    const { redis, keys, generation, options } = this.ctx;
    for (const key of [keys.data(generation), keys.readers, keys.meta])
      redis.pexpire(key, options.ttlMs).catch(() => {});
  }

  /** Waits for every append in flight. */
  private async settleInFlight(): Promise<void> {
    this.flush();
    while (this.inFlight.length > 0) await this.inFlight.shift()!.reply;
    if (this.failure) throw this.failure;
  }

  async end(): Promise<void> {
    const { redis, keys, scripts, generation, options } = this.ctx;
    try {
      await this.settleInFlight();
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
    const now = Date.now();
    const refreshTtl = now - this.ttlRefreshedAt >= TTL_REFRESH_MS || frame.kind !== 'data';
    if (refreshTtl) this.ttlRefreshedAt = now;
    return scripts.append(
      [keys.data(generation), keys.readers, keys.meta],
      [
        asBuffer(encodeFrameHeader(frame)),
        frame.kind === 'data' ? asBuffer(frame.payload) : '',
        frame.kind === 'data' ? frame.offset + frame.payload.byteLength : frame.offset,
        refreshTtl ? options.ttlMs : '',
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
