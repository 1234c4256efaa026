import { OFFSET_PARAM, RESUMABLE_HEADER, RESUMABLE_YES } from '../protocol/resumable.js';
import { UPLOAD_COMPLETE_HEADER, UPLOAD_LENGTH_HEADER } from '../protocol/upload-headers.js';
import { blobOf, sliceOf } from './blob-body.js';
import {
  GaveUpError,
  type IntegrityError,
  PeerAbortedError,
  RefusedError,
  TransferError,
  UsageError,
} from './errors.js';
import { reasonOf } from './http-reason.js';
import { describe } from './network-error.js';
import { headRequest, type PipeProbe, probeOf, probeWithRetries } from './pipe-probe.js';
import type { PlainSource } from './plain-source.js';
import { Backoff, retryAfterMs, retryableStatus } from './retry-policy.js';
import { readTranscript, type TranscriptLine } from './transcript-reader.js';
import { StallError, StallWatch } from './transfer-events.js';
import type { TransferOptions } from './transfer-options.js';
import { MIN_PIECE_BYTES, type UploadMode } from './upload-mode.js';
import type { SendEncoding } from './wire-format.js';

/** Everything `send` needs; the CLI and the page build it. */
export interface SendOptions extends TransferOptions {
  readonly source: PlainSource;
  readonly encoding: SendEncoding;
  /**
   * What an earlier, interrupted run of this transfer sent (its file as it was then, its sealed header):
   * when the pipe still has that run's dropped sender, the transfer continues at the broker's offset with
   * these instead of starting over. `changed` is thrown instead when the file is no longer what it was.
   */
  readonly continuing?: {
    readonly source: PlainSource;
    readonly encoding: SendEncoding;
    readonly changed?: IntegrityError;
  };
  /** How the body goes up (default `{ kind: 'stream' }`); see `UploadMode`. */
  readonly upload?: UploadMode;
}

/** How a send ended well. */
export interface SendResult {
  /** Wire bytes in the pipe (the plaintext plus framing or sealing). */
  readonly wireBytes: number;
  /** Times the upload continued after a break. */
  readonly resumes: number;
  /** What the server said last (the transcript's last line). */
  readonly summary: string;
}

/** How one attempt ended. */
type Outcome =
  | { readonly kind: 'done'; readonly summary: string }
  | {
      readonly kind: 'broken';
      readonly reason: string;
      readonly started: boolean;
      readonly waitMs?: number;
      /** The wire offset the body was read to, and whether that was its end. */
      readonly sentTo: number;
      readonly sentAll: boolean;
    }
  | {
      readonly kind: 'rewait';
      readonly reason: string;
      /**
       * The connection broke rather than the server ending the wait. The transfer may have begun all the
       * same: a browser's fetch over HTTP/1.1 shows the response only once the upload is done, so a cut
       * piece loses its "started" line with it.
       */
      readonly connectionBroke: boolean;
    }
  /** A piece was committed: the next one continues at this wire offset. */
  | { readonly kind: 'piece'; readonly offset: number }
  /**
   * A 409 to a request without an offset whose body may have gone up before: a browser sends a request
   * again by itself, body and all, when a kept-alive connection broke before the answer's head came
   * (Chromium's `ShouldResendRequest`). Then the transfer that runs is this sender's own, opened by the
   * first copy. `upTo`: the wire offset this request's body ends at.
   */
  | {
      readonly kind: 'maybe-resent';
      readonly status: number;
      readonly reason: string;
      readonly upTo: number;
    };

/**
 * Sends one body through a pipe and does not stop until every receiver has it, the server refuses for good,
 * or the retry budget is spent. A break before the transfer started waits again; a break after it resumes
 * at the broker's committed offset (`HEAD`, then `PUT ?offset=`) where the server can, and says it cannot
 * where it cannot.
 * @throws TransferError (RefusedError, GaveUpError, PeerAbortedError, IntegrityError)
 */
export async function send(options: SendOptions): Promise<SendResult> {
  const { clock, retry, onEvent = () => {} } = options;
  const backoff = new Backoff(retry, () => clock.now(), options.random);
  let probe = options.knownProbe ?? (await probeWithRetries(options, backoff, undefined, 'return'));
  // Whoever probed for us has told the user already; after a refused probe the PUT is refused with the
  // server's reason, and a notice before it would only mislead.
  const tell = !options.knownProbe && !probe.refused;
  if (tell && !probe.edgepipe) {
    onEvent({
      type: 'notice',
      text: 'the server does not say it can resume: a break after the start ends the transfer',
    });
  } else if (tell && !probe.resumable) {
    onEvent({
      type: 'notice',
      text: 'this server cannot resume (in-memory broker): a break after the start ends the transfer',
    });
  }
  let mode = options.upload ?? STREAM;
  if (
    mode.kind === 'pieces' &&
    !(Number.isSafeInteger(mode.pieceBytes) && mode.pieceBytes >= MIN_PIECE_BYTES)
  ) {
    throw new UsageError(`a piece should be a whole number of bytes, at least ${MIN_PIECE_BYTES}`);
  }
  if (mode.kind === 'pieces' && !probe.resumable && !probe.refused) {
    // Without a broker that holds the transfer between requests there is nothing to continue a piece.
    mode = WHOLE;
    onEvent({ type: 'notice', text: 'this server cannot resume: the body goes up whole, not in pieces' });
  }
  // Where the next attempt starts on the wire; undefined: from the start, as a new transfer.
  let resumeAt: number | undefined;
  let body: Body = { source: options.source, encoding: options.encoding };
  const earlier = options.continuing;
  if (earlier && probe.state === 'transferring' && probe.senderDropped === false) {
    // The killed run's connection may not have closed on the server's side yet (its last bytes and its FIN
    // queue behind a full window until a receiver reads): wait until it counts as dropped, as after a break.
    probe = await probeWithRetries(
      options,
      backoff,
      stillConnected("the server still counts the interrupted run's sender as connected"),
    );
  }
  if (earlier && probe.state === 'transferring' && probe.senderDropped && probe.uploadOffset !== undefined) {
    if (earlier.changed) throw earlier.changed;
    body = { source: earlier.source, encoding: earlier.encoding };
    resumeAt = probe.uploadOffset;
    onEvent({ type: 'notice', text: `continuing an interrupted transfer at byte ${resumeAt}` });
  } else if (
    earlier &&
    probe.state === 'ended' &&
    probe.uploadOffset !== undefined &&
    probe.uploadOffset === earlier.encoding.wireLength(earlier.source.length)
  ) {
    // The earlier run was killed after the broker had every byte: the transfer ended without it and only
    // its transcript was lost (as in the loop below). Sending again would open a new transfer nobody reads.
    // An aborted transfer, or another of another length, reports no such offset.
    if (earlier.changed) throw earlier.changed;
    await catchUpDigest(options, earlier.source, earlier.source.length ?? 0);
    return {
      wireBytes: earlier.encoding.wireLength(earlier.source.length) ?? -1,
      resumes: 0,
      summary: 'The interrupted transfer had ended on the server while this sender was down.',
    };
  }
  let resumes = 0;
  // Whether the last attempt broke: the server may then still hold this sender's dropped place a moment.
  let broke = false;
  // Whether the next attempt continues after a piece (not a resume: nothing broke).
  let nextPiece = false;
  for (;;) {
    options.signal?.throwIfAborted();
    const outcome = await attempt(options, body, resumeAt, backoff, broke, mode, nextPiece);
    // A wait whose connection broke counts too: the server may still hold that request's place, or have
    // begun the transfer with it. A 409 to the next request then sends it to ask where the transfer stands.
    broke = outcome.kind === 'broken' || (outcome.kind === 'rewait' && outcome.connectionBroke);
    nextPiece = outcome.kind === 'piece';
    if (outcome.kind === 'piece') {
      // At once, at the offset the server committed: no HEAD, no pause.
      backoff.progressed();
      resumeAt = outcome.offset;
      continue;
    }
    if (outcome.kind === 'done') {
      return {
        wireBytes: body.encoding.wireLength(body.source.length) ?? -1,
        resumes,
        summary: outcome.summary,
      };
    }
    if (outcome.kind === 'maybe-resent') {
      const own = probe.resumable ? await ownTransfer(options, outcome.upTo) : undefined;
      if (own === undefined) throw new RefusedError(outcome.status, outcome.reason);
      onEvent({ type: 'notice', text: `continuing this sender's transfer at byte ${own}` });
      resumeAt = own;
      resumes += 1;
      continue;
    }
    if (outcome.kind === 'rewait') {
      // The wait itself ended (the server's wait limit, a NAT that dropped the idle connection): not a
      // failure of the transfer, which has not begun. Wait again.
      backoff.progressed();
      onEvent({ type: 'notice', text: `${outcome.reason}; waiting again` });
      resumeAt = undefined;
      continue;
    }
    if (!probe.resumable) {
      if (outcome.started) {
        throw new GaveUpError(
          `the connection broke during the transfer (${outcome.reason}) and this server cannot resume it`,
        );
      }
      await pause(options, backoff, outcome.reason, outcome.waitMs);
      resumeAt = undefined;
      continue;
    }
    await pause(options, backoff, outcome.reason, outcome.waitMs);
    // Where the transfer stands decides, not what this client saw: the transcript may have been cut before
    // its "Start sending" line, or after the last byte was committed. The server may not have noticed the
    // drop yet: ask until it counts the sender as dropped.
    probe = await probeWithRetries(
      options,
      backoff,
      stillConnected('the server still counts the sender as connected'),
    );
    if (probe.state === 'transferring' && probe.senderDropped && probe.uploadOffset !== undefined) {
      resumeAt = probe.uploadOffset;
      resumes += 1;
      continue;
    }
    if (probe.state === 'ended' && outcome.sentAll && probe.uploadOffset === outcome.sentTo) {
      // Every byte was committed and the transfer ended; only its transcript was lost with the connection.
      return {
        wireBytes: outcome.sentTo,
        resumes,
        summary: 'The transfer ended while the connection was down.',
      };
    }
    if (outcome.started) {
      throw new GaveUpError(
        `the connection broke (${outcome.reason}) and the server no longer holds the transfer (it is ${probe.state ?? 'gone'}` +
          `${probe.uploadOffset === undefined ? '' : ` at byte ${probe.uploadOffset}`}; this client sent ${outcome.sentTo} bytes${outcome.sentAll ? ', all of them' : ''})`,
      );
    }
    resumeAt = undefined;
  }
}

const STREAM: UploadMode = { kind: 'stream' };
const WHOLE: UploadMode = { kind: 'whole' };

/** What is sent: the plaintext's source and its wire encoding. */
interface Body {
  readonly source: PlainSource;
  readonly encoding: SendEncoding;
}

/** Asks `HEAD` again while a transfer runs whose sender the server still counts as connected. */
function stillConnected(why: string): (probe: PipeProbe) => string | undefined {
  return (probe) => (probe.state === 'transferring' && probe.senderDropped === false ? why : undefined);
}

/** How long a 409 that may answer a resent request waits for the transfer's sender to count as dropped. */
const RESENT_WAIT_MS = 5000;

/**
 * After a `maybe-resent` 409: the offset to continue this sender's own transfer at, when one runs whose
 * sender dropped (within `RESENT_WAIT_MS`: the broken first copy is seen to close a moment later) at an
 * offset this sender's body reached; undefined when the path is another's (the refusal then stands).
 */
async function ownTransfer(options: SendOptions, upTo: number): Promise<number | undefined> {
  const deadline = options.clock.now() + RESENT_WAIT_MS;
  for (;;) {
    let probe: PipeProbe | undefined;
    try {
      probe = probeOf(await headRequest(options));
    } catch (error) {
      options.signal?.throwIfAborted();
      if (error instanceof TransferError) throw error;
    }
    if (probe && probe.state !== 'transferring') return undefined;
    if (probe?.senderDropped && probe.uploadOffset !== undefined) {
      return probe.uploadOffset <= upTo ? probe.uploadOffset : undefined;
    }
    if (options.clock.now() >= deadline) return undefined;
    await options.clock.sleep(250, options.signal);
  }
}

/** Waits the next backoff step, or gives up when the budget is spent. */
async function pause(
  options: SendOptions,
  backoff: Backoff,
  reason: string,
  serverWaitMs?: number,
): Promise<void> {
  const waitMs = backoff.next(serverWaitMs);
  if (waitMs === undefined) {
    throw new GaveUpError(
      `gave up after ${Math.round(options.retry.budgetMs / 1000)} s without progress: ${reason}`,
    );
  }
  options.onEvent?.({ type: 'retrying', reason, inMs: Math.round(waitMs), attempt: backoff.attempts });
  await options.clock.sleep(waitMs, options.signal);
}

/** One PUT, from the start or from `resumeAt`, read to the end of its transcript. */
async function attempt(
  options: SendOptions,
  { source, encoding }: Body,
  resumeAt: number | undefined,
  backoff: Backoff,
  afterBreak: boolean,
  mode: UploadMode,
  afterPiece: boolean,
): Promise<Outcome> {
  const { onEvent = () => {}, clock } = options;
  const plan = encoding.from(source, resumeAt ?? 0);
  const url = new URL(options.url);
  if (resumeAt !== undefined) url.searchParams.set(OFFSET_PARAM, String(plan.wireOffset));
  const controller = new AbortController();
  const onUserAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onUserAbort, { once: true });
  const stall = new StallWatch(controller, options.stallMs, clock);
  // A Blob body's upload is invisible to the client (no read tells a byte left): only a streamed body is
  // watched for a stall; the server's idle timeout watches the other.
  const arm = () => {
    if (mode.kind === 'stream') stall.arm();
  };
  let started = resumeAt !== undefined;
  if (started) arm();
  const total = source.length;
  let plainAt = plan.plainOffset;
  // The plaintext, counted (progress, stall) and digested once, then encoded for the wire.
  let plain: ReadableStream<Uint8Array>;
  try {
    await catchUpDigest(options, source, plan.plainOffset);
    plain = source.from(plan.plainOffset);
  } catch (error) {
    stall.stop();
    options.signal?.removeEventListener('abort', onUserAbort);
    throw error;
  }
  const counted = plain.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform: (chunk, out) => {
        options.digest?.updateAt(plainAt, chunk);
        plainAt += chunk.byteLength;
        stall.touch();
        backoff.progressed();
        onEvent({ type: 'progress', bytes: plainAt });
        out.enqueue(chunk);
      },
      flush: () => {
        if (!plan.encode) sentAll = true;
      },
    }),
  );
  // How far the body was read, on the wire: for plain bytes the plaintext count says it; an encoded body
  // is counted after its encoder.
  let sentAll = false;
  let wireAt = plan.wireOffset;
  const body = plan.encode
    ? counted.pipeThrough(plan.encode).pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform: (chunk, out) => {
            wireAt += chunk.byteLength;
            out.enqueue(chunk);
          },
          flush: () => {
            sentAll = true;
          },
        }),
      )
    : counted;
  const broken = (reason: string, waitMs?: number): Outcome => ({
    kind: 'broken',
    reason,
    started,
    sentTo: plan.encode ? wireAt : plan.wireOffset + plainAt - plan.plainOffset,
    sentAll,
    ...(waitMs !== undefined ? { waitMs } : {}),
  });
  let wireLength = encoding.wireLength(total);
  // A Blob body (whole, or a piece) is read before the request; a streamed one as it goes up.
  let requestBody: ReadableStream<Uint8Array> | Blob = body;
  let piece = false;
  if (mode.kind !== 'stream') {
    try {
      const limit = mode.kind === 'pieces' ? mode.pieceBytes : undefined;
      const sliced =
        !plan.encode && !options.digest && source.blob && total !== undefined
          ? sliceOf(source, plan.wireOffset, limit, total)
          : undefined;
      const made = sliced ?? (await blobOf(body, limit, plan.wireOffset, wireLength));
      if (sliced) {
        // Nothing is read from the stream (its source was opened, though: give it back).
        body.cancel().catch(() => {});
        plainAt = plan.wireOffset + made.blob.size;
        sentAll = made.last;
      }
      requestBody = made.blob;
      piece = !made.last;
      // A body of unknown length that ended in this piece: its length is known now.
      if (made.last) wireLength ??= plan.wireOffset + made.blob.size;
    } catch (error) {
      stall.stop();
      options.signal?.removeEventListener('abort', onUserAbort);
      throw error;
    }
  }
  // Pairs, not a Headers object, which joins a repeated header (`--header 'X-Piping: a'` twice) into one
  // value, "a, b": the broker hands each X-Piping to its receivers as it came, and a value may hold a comma.
  const own: Array<[string, string]> = [];
  if (encoding.contentType) own.push(['Content-Type', encoding.contentType]);
  if (options.declareResumable !== false) own.push([RESUMABLE_HEADER, RESUMABLE_YES]);
  // A Blob's length is the request's Content-Length (fetch sets it); a stream's is set here, which a
  // browser drops (a forbidden header), so the whole length goes in Upload-Length too.
  if (wireLength !== undefined && mode.kind === 'stream')
    own.push(['Content-Length', String(wireLength - plan.wireOffset)]);
  if (wireLength !== undefined) own.push([UPLOAD_LENGTH_HEADER, String(wireLength)]);
  if (piece) own.push([UPLOAD_COMPLETE_HEADER, '?0']);
  const replaced = new Set(own.map(([name]) => name.toLowerCase()));
  const headers: Array<[string, string]> = [
    ...options.headers
      .filter(([name]) => !replaced.has(name.toLowerCase()))
      .map(([name, value]): [string, string] => [name, value]),
    ...own,
  ];
  if (afterPiece) {
    // The next piece of a running transfer: neither a wait nor a resume.
  } else if (resumeAt !== undefined) onEvent({ type: 'resumed', offset: plan.wireOffset });
  else onEvent({ type: 'waiting', detail: receiversWanted(options.url) });
  const waitingSince = clock.now();
  let summary = '';
  let final: TranscriptLine | undefined;
  try {
    const response = await options.fetch(url, {
      method: 'PUT',
      headers,
      body: requestBody,
      signal: controller.signal,
      // A streamed request body (fetch's rule for ReadableStream bodies).
      ...(requestBody instanceof Blob ? {} : { duplex: 'half' }),
    } as RequestInit);
    if (!response.ok) {
      const reason = await reasonOf(response);
      if (retryableStatus(response.status)) {
        const waitMs = retryAfterMs(response.headers.get('retry-after'), clock.now());
        return broken(`HTTP ${response.status}: ${reason}`, waitMs);
      }
      // A 409 right after a break is most likely this sender's own dropped connection, still counted
      // until the server notices it: tried again (bounded by the retry budget), not taken as a refusal.
      if (afterBreak && response.status === 409 && resumeAt === undefined) {
        return broken(`HTTP 409: ${reason}`);
      }
      if (response.status === 409 && resumeAt === undefined && requestBody instanceof Blob) {
        return { kind: 'maybe-resent', status: 409, reason, upTo: plan.wireOffset + requestBody.size };
      }
      throw new RefusedError(response.status, reason);
    }
    if (!response.body) return broken('the server answered without a transcript');
    await readTranscript(response.body, (line) => {
      if (line.kind === 'started') {
        started = true;
        arm();
        onEvent({ type: 'started', total });
      } else if (line.kind === 'resumed') {
        started = true;
        arm();
        if (!afterPiece) onEvent({ type: 'started', total });
      } else if (line.kind === 'piece' && piece) {
        final = line;
        // The progress bar moves per piece (plaintext bytes; for a framed or sealed body, as read).
        if (!plan.encode) onEvent({ type: 'progress', bytes: line.offset });
        return;
      }
      if (line.kind === 'all-received' || line.kind === 'partly-received' || line.kind === 'receivers-gone')
        final = line;
      // A Blob slice was never read, so nothing counted its bytes: they are all there now.
      if (line.kind === 'all-received' && mode.kind !== 'stream' && !plan.encode && total !== undefined)
        onEvent({ type: 'progress', bytes: total });
      if (line.kind === 'nobody-came' || line.kind === 'error') final ??= line;
      if (line.kind === 'info' || line.kind === 'error' || line.kind === 'nobody-came')
        onEvent({ type: 'notice', text: line.text });
      if (line.kind === 'info' || line.kind === 'resumed' || line.kind === 'started' || line.kind === 'piece')
        stall.touch();
      summary = 'text' in line ? line.text : summary;
    });
  } catch (error) {
    if (error instanceof TransferError) throw error;
    options.signal?.throwIfAborted();
    const reason =
      controller.signal.reason instanceof StallError ? controller.signal.reason.message : describe(error);
    if (!started && clock.now() - waitingSince > 10_000)
      return { kind: 'rewait', reason: `the wait broke (${reason})`, connectionBroke: true };
    return broken(reason);
  } finally {
    stall.stop();
    options.signal?.removeEventListener('abort', onUserAbort);
    controller.abort();
  }
  return outcomeOf(final, broken);
}

function outcomeOf(final: TranscriptLine | undefined, broken: (reason: string) => Outcome): Outcome {
  switch (final?.kind) {
    case 'piece':
      return { kind: 'piece', offset: final.offset };
    case 'all-received':
      return { kind: 'done', summary: 'All receiver(s) received everything.' };
    case 'partly-received':
      throw new PeerAbortedError(
        `${final.aborted} receiver(s) aborted before the end; ${final.received} received everything`,
      );
    case 'receivers-gone':
      throw new PeerAbortedError('every receiver left before the end');
    case 'nobody-came':
      return { kind: 'rewait', reason: final.text, connectionBroke: false };
    case 'error':
      return broken(`the server said: ${final.text}`);
    default:
      return broken('the transcript ended before the transfer did');
  }
}

/** A restarted sender's digest covers the plaintext before its resume point too: read it once. */
async function catchUpDigest(options: SendOptions, source: PlainSource, plainOffset: number): Promise<void> {
  const digest = options.digest;
  if (!digest || digest.fed >= plainOffset) return;
  const reader = source.from(digest.fed).getReader();
  try {
    while (digest.fed < plainOffset) {
      const { done, value } = await reader.read();
      if (done) break;
      digest.update(value.subarray(0, plainOffset - digest.fed));
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function receiversWanted(url: URL): string {
  const n = Number(url.searchParams.get('n') ?? '1');
  return n === 1 ? '1 receiver' : `${n} receivers`;
}
