import { OFFSET_PARAM, RESUMABLE_HEADER, RESUMABLE_YES, RESUME_FROM_HEADER } from '../protocol/resumable.js';
import { GaveUpError, IntegrityError, PeerAbortedError, RefusedError, TransferError } from './errors.js';
import { reasonOf } from './http-reason.js';
import { describe } from './network-error.js';
import { headRequest, probeOf, probeWithRetries } from './pipe-probe.js';
import { Backoff, retryAfterMs, retryableStatus } from './retry-policy.js';
import { StallError, StallWatch } from './transfer-events.js';
import type { TransferOptions } from './transfer-options.js';
import type { ReceiveDecoding } from './wire-format.js';

/** What the sender's headers say about the body, once the transfer starts. */
export interface ReceivedMeta {
  /** Wire length, when the sender declared one. */
  readonly wireLength: number | undefined;
  readonly contentType: string | undefined;
  readonly contentDisposition: string | undefined;
}

/** Where the plaintext goes: a file (appended to across restarts) or stdout. */
export interface PlainSink {
  write(chunk: Uint8Array): Promise<void>;
}

/** Everything `receive` needs. */
export interface ReceiveOptions extends TransferOptions {
  /**
   * Picks the decoding once the first response's headers are in (framed and sealed bodies announce
   * themselves by Content-Type), and learns the metadata (the CLI opens `-O`'s file then). Called once.
   */
  readonly begin: (
    meta: ReceivedMeta,
  ) => Promise<{ readonly sink: PlainSink; readonly decoding: ReceiveDecoding }>;
  /**
   * A restarted receiver: plaintext already written by an earlier run, the decoding it used, and the
   * metadata it saw. The first request then resumes instead of starting over.
   */
  readonly continuing?: {
    readonly plainWritten: number;
    readonly decoding: ReceiveDecoding;
    readonly sink: PlainSink;
    readonly meta: ReceivedMeta;
  };
}

/** How a receive ended well. */
export interface ReceiveResult {
  readonly plainBytes: number;
  readonly resumes: number;
  readonly meta: ReceivedMeta;
}

/** How one attempt ended, when not with the whole body. */
type Outcome =
  | { readonly kind: 'done' }
  | {
      readonly kind: 'broken';
      readonly reason: string;
      readonly waitMs?: number;
      /** The connection broke before the response's head: the server may have counted this receiver. */
      readonly beforeHead?: boolean;
    }
  | {
      readonly kind: 'rewait';
      readonly reason: string;
      /** The connection broke rather than the server ending the wait: the transfer may have begun. */
      readonly connectionBroke: boolean;
    };

/**
 * Receives one body and does not stop until every byte of it is written, the server refuses for good, or
 * the retry budget is spent. A break before the transfer started waits again; a break after it asks for
 * the rest (`Range: bytes=N-`, checked against `Content-Range`) from where the written output ends.
 * @throws TransferError
 */
export async function receive(options: ReceiveOptions): Promise<ReceiveResult> {
  const { clock, onEvent = () => {} } = options;
  const earlier = options.continuing;
  if (earlier && earlier.decoding.plainLength(earlier.meta.wireLength) === earlier.plainWritten) {
    // The earlier run was killed after its last byte was written: the output is whole, and the server may
    // have forgotten the transfer already (a Range from its end would be refused).
    return { plainBytes: earlier.plainWritten, resumes: 0, meta: earlier.meta };
  }
  const backoff = new Backoff(options.retry, () => clock.now(), options.random);
  const probe = options.knownProbe ?? (await probeWithRetries(options, backoff, undefined, 'return'));
  // A refused probe leaves the GET to say why (with the server's reason): no notice before it.
  if (!probe.resumable && !options.knownProbe && !probe.refused) {
    onEvent({
      type: 'notice',
      text: probe.edgepipe
        ? 'this server cannot resume (in-memory broker): a break after the start ends the transfer'
        : 'the server does not say it can resume: a break after the start ends the transfer',
    });
  }
  const state: ReceiveState = {
    plainWritten: options.continuing?.plainWritten ?? 0,
    target: options.continuing,
    resumes: 0,
    resumable: probe.resumable,
    headStalls: 0,
  };
  for (;;) {
    options.signal?.throwIfAborted();
    const outcome = await attempt(options, state, backoff);
    if (outcome.kind === 'done') {
      return { plainBytes: state.plainWritten, resumes: state.resumes, meta: state.target!.meta };
    }
    if (outcome.kind === 'rewait') {
      backoff.progressed();
      onEvent({ type: 'notice', text: `${outcome.reason}; waiting again` });
      state.rejoin = false;
      state.afterBrokenWait = outcome.connectionBroke;
      // The head may have been lost with the connection just as the transfer began with this receiver in
      // it: rejoin where the server says a transfer runs, as after a cut before the head (below).
      if (outcome.connectionBroke && state.resumable) await askWhetherToRejoin(options, state, backoff);
      continue;
    }
    state.afterBrokenWait = !state.target && outcome.beforeHead === true;
    if (state.target && !state.resumable) {
      throw new GaveUpError(
        `the connection broke during the transfer (${outcome.reason}) and this server cannot resume it`,
      );
    }
    const waitMs = backoff.next(outcome.waitMs);
    if (waitMs === undefined) {
      throw new GaveUpError(
        `gave up after ${Math.round(options.retry.budgetMs / 1000)} s without progress: ${outcome.reason}`,
      );
    }
    onEvent({
      type: 'retrying',
      reason: outcome.reason,
      inMs: Math.round(waitMs),
      attempt: backoff.attempts,
    });
    await clock.sleep(waitMs, options.signal);
    if (state.target) state.resumes += 1;
    // Cut before the head: the transfer may have started with this receiver in it (and even ended, for a
    // small body), its place now kept for a resume. A new plain GET would wait for a sender that already
    // came, so where a transfer runs or just ended this receiver asks to rejoin from byte 0.
    state.rejoin = false;
    if (!state.target && state.resumable && outcome.beforeHead)
      await askWhetherToRejoin(options, state, backoff);
  }
}

/** Sets `rejoin` where a transfer runs or just ended: this receiver may be part of it. */
async function askWhetherToRejoin(options: ReceiveOptions, state: ReceiveState, backoff: Backoff) {
  const now = await probeWithRetries(options, backoff);
  state.rejoin = now.state === 'transferring' || now.state === 'ended';
}

interface ReceiveState {
  plainWritten: number;
  /** Set once the transfer started: where the plaintext goes and how the wire is decoded. */
  target:
    | { readonly sink: PlainSink; readonly decoding: ReceiveDecoding; readonly meta: ReceivedMeta }
    | undefined;
  resumes: number;
  /** Whether the server can serve the rest after a break (a plain 200 to a Range request says no). */
  resumable: boolean;
  /** Where a framed or sealed body last ended without its last chunk: the same end twice is final. */
  truncatedAt?: number;
  /** The next request rejoins a transfer this receiver may be part of (`?offset=0`). */
  rejoin?: boolean;
  /**
   * The last wait's connection broke before a head came: the server may still count that request as
   * waiting until it notices, so a 409 to the next wait is asked again (within the retry budget), not
   * taken as final.
   */
  afterBrokenWait?: boolean;
  /** Resumes in a row that stalled before their first byte. */
  headStalls: number;
}

async function attempt(options: ReceiveOptions, state: ReceiveState, backoff: Backoff): Promise<Outcome> {
  const { clock, onEvent = () => {} } = options;
  const controller = new AbortController();
  const onUserAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onUserAbort, { once: true });
  const stall = new StallWatch(controller, options.stallMs, clock);
  const headers = new Headers();
  for (const [name, value] of options.headers) headers.append(name, value);
  if (options.declareResumable !== false) headers.set(RESUMABLE_HEADER, RESUMABLE_YES);
  const from = state.target ? state.target.decoding.resumePoint(state.plainWritten) : 0;
  let url = options.url;
  if (from > 0) headers.set('Range', `bytes=${from}-`);
  // A resume expects bytes at once (they are kept, or the sender is mid-stream): a server that accepts the
  // connection and says nothing (frozen, or a dead path the kernel still answers for) is a stall too. Each
  // resume that stalls before its first byte gives the next one twice as long: a server that comes back
  // has the abandoned attempts queued before it to sort out, and hammering it at the same pace never lets
  // one through (seen with an instance frozen for 3 s and a 1 s stall timeout).
  if (state.target) stall.armUntilFirstByte(options.stallMs * 2 ** Math.min(state.headStalls, 5));
  // Begun (or maybe begun: rejoining), but no byte kept: it still takes its own place back with
  // `?offset=0`. A plain GET (or `Range: bytes=0-`, which the server reads as one) would be a new receiver
  // of a pipe that has its receivers.
  if (from === 0 && (state.target || state.rejoin)) {
    url = new URL(options.url);
    url.searchParams.set(OFFSET_PARAM, '0');
  }
  if (state.target) onEvent({ type: 'resumed', offset: from });
  else onEvent({ type: 'waiting', detail: 'the sender' });
  const waitingSince = clock.now();
  let headersIn = false;
  let wireAt = from;
  try {
    const response = await options.fetch(url, { headers, signal: controller.signal });
    headersIn = true;
    if (!response.ok) return await refusal(options, state, response, from);
    if (from > 0 && response.status !== 206) {
      // A server that ignores Range sends the body from its start again: there is no rest to be had.
      state.resumable = false;
      await response.body?.cancel().catch(() => {});
      throw new GaveUpError(
        `the server cannot resume: asked for bytes from ${from}, it sent the whole body again`,
      );
    }
    if (from > 0) checkContentRange(response, from);
    const meta = state.target?.meta ?? metaOf(response);
    if (!state.target) {
      const chosen = await options.begin(meta);
      state.target = { ...chosen, meta };
      onEvent({ type: 'started', total: chosen.decoding.plainLength(meta.wireLength) });
    }
    stall.arm();
    const body = response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    const decoder = await state.target.decoding.decoderAt(state.plainWritten);
    const counted = body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform: (chunk, out) => {
          wireAt += chunk.byteLength;
          stall.touch();
          state.headStalls = 0;
          out.enqueue(chunk);
        },
      }),
    );
    const plain = decoder ? counted.pipeThrough(decoder) : counted;
    const reader = plain.getReader();
    const sink = state.target.sink;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await sink.write(value);
      options.digest?.update(value);
      state.plainWritten += value.byteLength;
      backoff.progressed();
      onEvent({ type: 'progress', bytes: state.plainWritten });
    }
    const declared = state.target.meta.wireLength;
    if (declared !== undefined && wireAt < declared) {
      return { kind: 'broken', reason: `the body ended at byte ${wireAt} of ${declared}` };
    }
    return { kind: 'done' };
  } catch (error) {
    if (error instanceof TransferError) throw error;
    options.signal?.throwIfAborted();
    // The last chunk authenticated and was written: what failed after it (its end marker, the
    // connection) costs nothing.
    if (state.target?.decoding.complete()) return { kind: 'done' };
    // A decoder's verdict on the bytes themselves (tampered, wrong key) is final; a truncation may be a
    // clean-looking cut by an intermediary, which a resume can repair.
    const verdict = integrityVerdict(error);
    if (verdict) throw verdict;
    if ((error as { code?: unknown })?.code === 'truncated') {
      // Ended cleanly without its last chunk: an intermediary's cut (the rest can be asked for), or a
      // sender's body that really ends there (asking again ends at the same byte).
      if (state.truncatedAt === wireAt || !state.resumable) {
        throw new IntegrityError((error as Error).message, { cause: error });
      }
      state.truncatedAt = wireAt;
    }
    const stalled = controller.signal.reason instanceof StallError;
    if (stalled && wireAt === from) state.headStalls += 1;
    const reason = stalled ? (controller.signal.reason as StallError).message : describe(error);
    if (!headersIn && !state.target && clock.now() - waitingSince > 10_000) {
      return { kind: 'rewait', reason: `the wait broke (${reason})`, connectionBroke: true };
    }
    return { kind: 'broken', reason, beforeHead: !headersIn };
  } finally {
    stall.stop();
    options.signal?.removeEventListener('abort', onUserAbort);
    controller.abort();
  }
}

/** A non-2xx answer: a refusal for good, a resume the server cannot serve, or a reason to try again. */
async function refusal(
  options: ReceiveOptions,
  state: ReceiveState,
  response: Response,
  from: number,
): Promise<Outcome> {
  const reason = await reasonOf(response);
  const status = response.status;
  if (status === 504 && !state.target) return { kind: 'rewait', reason, connectionBroke: false };
  if (state.rejoin && !state.target && status === 409) {
    // Nobody kept a place for this receiver: it was not in the transfer after all. Wait as a new one.
    return { kind: 'broken', reason: `not part of the running transfer (${reason})` };
  }
  if (state.afterBrokenWait && !state.target && status === 409) {
    // Most likely this receiver's own earlier wait, which the server has not seen close yet.
    return { kind: 'broken', reason: `HTTP 409: ${reason}`, beforeHead: true };
  }
  if (retryableStatus(status)) {
    const waitMs = retryAfterMs(response.headers.get('retry-after'), options.clock.now());
    return {
      kind: 'broken',
      reason: `HTTP ${status}: ${reason}`,
      ...(waitMs !== undefined ? { waitMs } : {}),
    };
  }
  if (state.target) {
    if (state.truncatedAt !== undefined) {
      throw new IntegrityError(
        `the body ended at byte ${state.truncatedAt} before its last chunk, and the server has no more (${reason})`,
      );
    }
    if (status === 501) {
      state.resumable = false;
      throw new GaveUpError(`the connection broke at byte ${from} and this server cannot resume (${reason})`);
    }
    if (status === 416) {
      const first = response.headers.get(RESUME_FROM_HEADER);
      throw new GaveUpError(
        `the server no longer holds byte ${from}${first ? ` (its first is ${first})` : ''}: the rest cannot be had`,
      );
    }
    if (status === 409 && (await transferRuns(options))) {
      // The transfer runs, and the server still counts an earlier connection of this receiver (one it
      // has not seen close yet) in its place: ask again once it has.
      return { kind: 'broken', reason: `HTTP 409: ${reason}` };
    }
    if (status === 409 || status === 404 || status === 410) {
      throw new PeerAbortedError(`the transfer ended on the server before every byte arrived (${reason})`);
    }
  }
  throw new RefusedError(status, reason);
}

/** Whether `HEAD` says a transfer runs on the pipe (a failed HEAD says no). */
async function transferRuns(options: ReceiveOptions): Promise<boolean> {
  try {
    return probeOf(await headRequest(options)).state === 'transferring';
  } catch {
    return false;
  }
}

/** `Content-Range: bytes N-L/T` must start where the rest was asked from. */
function checkContentRange(response: Response, from: number): void {
  const range = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '');
  if (!range || Number(range[1]) !== from) {
    throw new IntegrityError(
      `asked for bytes from ${from}, the server answered Content-Range '${response.headers.get('content-range') ?? ''}'`,
    );
  }
}

function metaOf(response: Response): ReceivedMeta {
  const length = response.headers.get('content-length');
  return {
    wireLength: length !== null && /^\d+$/.test(length) ? Number(length) : undefined,
    contentType: response.headers.get('content-type') ?? undefined,
    contentDisposition: response.headers.get('content-disposition') ?? undefined,
  };
}

/** A decoder's error that speaks of the bytes (see `format/`), as an integrity failure; else undefined. */
function integrityVerdict(error: unknown): IntegrityError | undefined {
  const code = (error as { code?: unknown })?.code;
  if (
    code === 'wrong-key' ||
    code === 'tampered' ||
    code === 'unsupported' ||
    code === 'not-this-format' ||
    code === 'too-costly'
  ) {
    return new IntegrityError((error as Error).message, { cause: error });
  }
  return undefined;
}
