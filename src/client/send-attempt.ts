// One attempt of a send: a PUT from the start or from a resume offset, its body counted, watched for a
// stall and encoded for the wire, read to the end of the server's transcript and told as an `Outcome` that
// the loop in send.ts acts on (done, broken, wait again, a committed piece, a request maybe sent twice).
import { OFFSET_PARAM, RESUMABLE_HEADER, RESUMABLE_YES } from '../protocol/resumable.js';
import { UPLOAD_COMPLETE_HEADER, UPLOAD_LENGTH_HEADER } from '../protocol/upload-headers.js';
import { blobOf, sliceOf } from './blob-body.js';
import { PeerAbortedError, RefusedError, TransferError } from './errors.js';
import { reasonOf } from './http-reason.js';
import { describe } from './network-error.js';
import type { PlainSource } from './plain-source.js';
import { type Backoff, retryAfterMs, retryableStatus } from './retry-policy.js';
import type { SendOptions } from './send-options.js';
import { readTranscript, type TranscriptLine } from './transcript-reader.js';
import { StallError, StallWatch } from './transfer-events.js';
import type { UploadMode } from './upload-mode.js';
import type { SendEncoding } from './wire-format.js';

/** How one attempt ended. */
export type Outcome =
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

/** What is sent: the plaintext's source and its wire encoding. */
export interface Body {
  readonly source: PlainSource;
  readonly encoding: SendEncoding;
}

/** One PUT, from the start or from `resumeAt`, read to the end of its transcript. */
export async function attempt(
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
export async function catchUpDigest(
  options: SendOptions,
  source: PlainSource,
  plainOffset: number,
): Promise<void> {
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

/** "1 receiver" or "N receivers", as `?n=` asks. */
function receiversWanted(url: URL): string {
  const n = Number(url.searchParams.get('n') ?? '1');
  return n === 1 ? '1 receiver' : `${n} receivers`;
}
