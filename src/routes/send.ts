import type { Context } from 'hono';
import { PipeError, ReceiversGoneError } from '../broker/errors.js';
import type { PipeHeaders, SenderSession } from '../broker/types.js';
import { type ByteSource, skipBytes } from '../byte-source.js';
import { BodyTooLargeError, ClientIdleError, limitedUpload } from '../byte-source-guards.js';
import { DeadlineError, withDeadline } from '../clock.js';
import {
  noReceiverCameLine,
  pieceReceivedLine,
  resumingLine,
  startSendingLine,
} from '../protocol/transcript-lines.js';
import { UPLOAD_LENGTH_HEADER } from '../protocol/upload-headers.js';
import { type BodyEnd, pump, ReceiversLeft } from './body-pump.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { fail, failWithPipeError } from './http-error.js';
import { MultipartError, multipartBoundaryOf, readFirstPart } from './multipart.js';
import { passthroughHeaders } from './passthrough-headers.js';
import { ReceiverTally } from './pipe-events.js';
import { senderTargetOf } from './pipe-target.js';
import { resumableOf, senderResumeOf } from './resume-request.js';
import { Transcript } from './transcript.js';
import { declaredLengthOf, pieceOf, uploadLengthOf } from './upload-request.js';

const TRANSCRIPT_HEADERS = {
  ...CORS_ORIGIN,
  // Bare, as piping-server answers: the transcript is ASCII (see printableLine).
  'Content-Type': 'text/plain',
  'X-Content-Type-Options': 'nosniff',
} as const;

/**
 * `PUT`/`POST /<path>`: claims the sender slot, answers at once with a streaming transcript, waits for the
 * receivers, then streams the body (or a multipart upload's first part) through the broker. With
 * `?offset=N` it continues the running transfer of a sender that dropped, its body being the original's
 * from byte N (`HEAD /<path>` tells the committed offset).
 */
export function sendRoute(deps: RouteDeps) {
  return async function send(c: Context): Promise<Response> {
    const request = c.req.raw;
    const target = senderTargetOf(new URL(request.url), deps.config.limits);
    // A partial upload would reach receivers as if it were the whole body. A sender continues a transfer
    // with `?offset=N` instead.
    if (request.headers.has('content-range')) {
      fail(
        400,
        `Content-Range is not supported in ${request.method}; to continue a transfer, use ?offset=N.`,
      );
    }
    let boundary: string | undefined;
    try {
      boundary = multipartBoundaryOf(request.headers.get('content-type'));
    } catch (error) {
      if (error instanceof MultipartError) fail(400, error.message);
      throw error;
    }
    const resumeAt = senderResumeOf(new URL(request.url));
    if (resumeAt !== undefined && boundary) {
      fail(400, 'A multipart upload cannot be resumed; send the rest of the file as a plain body.');
    }
    const piece = pieceOf(request.headers, deps.broker.resumable, boundary !== undefined);
    // A piece's sender continues with `?offset=N` whatever it declared: its place is held between pieces.
    const resumable = resumableOf(request.headers, resumeAt !== undefined) || piece;
    const { maxBodyBytes, idleTimeoutMs } = deps.config.limits;
    const declared = request.headers.get('content-length');
    if (maxBodyBytes !== undefined && declared !== null && Number(declared) > maxBodyBytes) {
      fail(413, `The body is ${declared} bytes; this server accepts at most ${maxBodyBytes}.`);
    }
    // A multipart body's transfer body is its first part, whose length the request cannot know up front.
    if (boundary && request.headers.has(UPLOAD_LENGTH_HEADER)) {
      fail(
        400,
        `${UPLOAD_LENGTH_HEADER} is not taken with a multipart body (its part gives its own length).`,
      );
    }
    const uploadLength = uploadLengthOf(request.headers, piece, resumeAt, maxBodyBytes);
    // The body as the transfer reads it: held to the size cap (what a resumed transfer already holds
    // counts) and to the idle timeout.
    const upload = (alreadyHeld: number) =>
      limitedUpload(deps.requestBody(request, c.env), {
        clock: deps.clock,
        idleMs: idleTimeoutMs,
        maxBytes: maxBodyBytes === undefined ? undefined : maxBodyBytes - alreadyHeld,
      });
    const transcript = new Transcript();
    const left = new ReceiversLeft();
    const tally = new ReceiverTally();
    let session: SenderSession;
    try {
      session = await deps.broker.openSender({
        ...target,
        resumeAt,
        resumable,
        onEvent: (event) => {
          transcript.info(tally.observe(event));
          if (event.type === 'receiver-aborted' && event.remaining === 0) left.noneLeft();
        },
      });
    } catch (error) {
      if (error instanceof PipeError) failWithPipeError(error);
      throw error;
    }
    if (resumeAt !== undefined && session.resumedAt !== undefined) {
      const known = declaredLengthOf(session.resumedMeta?.headers);
      if (uploadLength !== undefined && known !== undefined && uploadLength !== known) {
        // Given back as it was found: dropped, for a sender that knows the transfer's length.
        await session.interrupt('The resumed upload named another length.').catch(() => {});
        fail(400, `${UPLOAD_LENGTH_HEADER} is ${uploadLength}, but this transfer's body is ${known} bytes.`);
      }
      transcript.info(resumingLine(session.resumedAt));
      deps.slots.get(request)?.transferring();
      const body = left.watch(skipBytes(upload(resumeAt), session.resumedAt - resumeAt));
      const end: BodyEnd = { piece, length: uploadLength ?? known, from: session.resumedAt };
      void finishTransfer(deps, request, body, end, session, transcript, tally, left);
      return deps.streamResponse(transcript, { headers: TRANSCRIPT_HEADERS });
    }
    transcript.info(`Waiting for ${target.receivers} receiver(s)...`);
    transcript.info(`${session.connectedAtOpen} receiver(s) has/have been connected.`);
    const whole = wholeBodyOf(deps, request, session, target.receivers, boundary, piece, uploadLength);
    if (whole) {
      void transferWhole(
        deps,
        request,
        whole,
        session,
        transcript,
        tally,
        deps.headerValues(request, c.env, 'x-piping'),
      );
      return deps.streamResponse(transcript, { headers: TRANSCRIPT_HEADERS });
    }
    const body = left.watch(upload(0));
    const xPiping = deps.headerValues(request, c.env, 'x-piping');
    const end: BodyEnd = { piece, length: uploadLength, from: 0 };
    void transfer(
      deps,
      request,
      body,
      end,
      session,
      transcript,
      tally,
      target.receivers,
      boundary,
      xPiping,
      left,
    );
    return deps.streamResponse(transcript, { headers: TRANSCRIPT_HEADERS });
  };
}

/** A body the broker takes whole (see `SenderSession.startStream`), and its declared length. */
interface WholeBody {
  readonly stream: ReadableStream<Uint8Array>;
  readonly length: number | undefined;
}

/**
 * The request's body to hand over whole, where the runtime moves streams natively (`AppDeps.passStream`), the
 * broker takes them and nothing needs to see the bytes: one receiver, no multipart part to cut out, no piece,
 * and a size cap checked by the declared length (a chunked body under a cap is counted chunk by chunk).
 */
function wholeBodyOf(
  deps: RouteDeps,
  request: Request,
  session: SenderSession,
  receivers: number,
  boundary: string | undefined,
  piece: boolean,
  uploadLength: number | undefined,
): WholeBody | undefined {
  if (!deps.passStream || !session.startStream || !request.body) return undefined;
  if (receivers !== 1 || boundary || piece || uploadLength !== undefined) return undefined;
  const declared = request.headers.get('content-length');
  const length = declared !== null && /^[0-9]{1,15}$/.test(declared) ? Number(declared) : undefined;
  if (length === undefined && deps.config.limits.maxBodyBytes !== undefined) return undefined;
  return { stream: request.body, length };
}

/**
 * A transfer whose body the broker passes whole: the transcript tells the same story as `transfer`, the
 * upload held to the same idle timeout (a stalled sender is cut, its receiver's body with it).
 */
async function transferWhole(
  deps: RouteDeps,
  request: Request,
  whole: WholeBody,
  session: SenderSession,
  transcript: Transcript,
  tally: ReceiverTally,
  xPiping: readonly string[],
): Promise<void> {
  if (!(await receiversCame(deps, request, session, transcript))) {
    whole.stream.cancel().catch(() => {});
    return;
  }
  deps.slots.get(request)?.transferring();
  transcript.info(startSendingLine(1));
  const headers = passthroughHeaders(
    {
      contentType: request.headers.get('content-type'),
      contentLength: whole.length === undefined ? null : String(whole.length),
      contentDisposition: request.headers.get('content-disposition'),
    },
    xPiping,
  );
  try {
    await session.startStream!({ headers }, whole.stream, whole.length, deps.config.limits.idleTimeoutMs);
  } catch (error) {
    if (error instanceof ClientIdleError) {
      deps.counters.transfers.failed += 1;
      transcript.error(error.message);
    } else if (error instanceof ReceiversGoneError) {
      deps.counters.transfers.receiversGone += 1;
      transcript.error(error.message);
    } else {
      deps.counters.transfers.failed += 1;
      transcript.error('Failed to send.');
    }
    transcript.close();
    return;
  }
  deps.counters.transfers.completed += 1;
  if (whole.length !== undefined) deps.counters.bytesIn += whole.length;
  deps.slots.get(request)?.completed();
  transcript.info('Sent successfully!');
  transcript.info(tally.sentLine());
  transcript.close();
}

/**
 * Waits for every receiver, up to `limits.waitTimeoutMs`. When none came, or the sender left, the slot is
 * released and the transcript ends with the reason: false.
 */
async function receiversCame(
  deps: RouteDeps,
  request: Request,
  session: SenderSession,
  transcript: Transcript,
): Promise<boolean> {
  try {
    await withDeadline(
      deps.clock,
      deps.config.limits.waitTimeoutMs,
      session.waitForReceivers(request.signal),
    );
    return true;
  } catch (error) {
    session.release();
    if (error instanceof DeadlineError) {
      transcript.error(noReceiverCameLine(Math.round(deps.config.limits.waitTimeoutMs / 1000)));
    } else if (error instanceof PipeError) {
      transcript.error(error.message);
    }
    transcript.close();
    return false;
  }
}

/** Runs one transfer to its end; every outcome ends in a transcript line, never in an unhandled rejection. */
async function transfer(
  deps: RouteDeps,
  request: Request,
  requestBody: ByteSource,
  end: BodyEnd,
  session: SenderSession,
  transcript: Transcript,
  tally: ReceiverTally,
  receivers: number,
  boundary: string | undefined,
  xPiping: readonly string[],
  left: ReceiversLeft,
): Promise<void> {
  if (!(await receiversCame(deps, request, session, transcript))) return;
  deps.slots.get(request)?.transferring();
  transcript.info(startSendingLine(receivers));

  let body = requestBody;
  let headers: PipeHeaders;
  try {
    if (boundary) {
      const part = await readFirstPart(body, boundary);
      body = part.body;
      headers = passthroughHeaders(
        {
          contentType: part.headers.get('content-type'),
          contentLength: part.headers.get('content-length'),
          // As the part gave it (`form-data; name=...; filename=...`), as piping-server passes it: browsers
          // take an unknown disposition type for `attachment` (RFC 6266, section 4.2) and keep the filename.
          contentDisposition: part.headers.get('content-disposition'),
        },
        xPiping,
      );
    } else {
      // The whole body's length: Upload-Length where given (a piece's own Content-Length is the piece's).
      const contentLength =
        end.length !== undefined
          ? String(end.length)
          : end.piece
            ? null
            : request.headers.get('content-length');
      headers = passthroughHeaders(
        {
          contentType: request.headers.get('content-type'),
          contentLength,
          contentDisposition: request.headers.get('content-disposition'),
        },
        xPiping,
      );
    }
    await session.start({ headers });
  } catch (error) {
    session.abort(error instanceof Error ? error.message : 'The upload could not be read.');
    const told = error instanceof MultipartError || error instanceof BodyTooLargeError;
    transcript.error(told || error instanceof ClientIdleError ? error.message : 'Failed to send.');
    transcript.close();
    return;
  }

  await finishTransfer(deps, request, body, end, session, transcript, tally, left);
}

/** Streams the body of a started transfer and reports the outcome. */
async function finishTransfer(
  deps: RouteDeps,
  request: Request,
  body: ByteSource,
  end: BodyEnd,
  session: SenderSession,
  transcript: Transcript,
  tally: ReceiverTally,
  left: ReceiversLeft,
) {
  const { counters } = deps;
  const outcome = await pump(body, end, session, transcript, left, (bytes) => {
    counters.bytesIn += bytes;
  });
  if (typeof outcome === 'object') {
    // A piece was committed: the transfer goes on with the next one. Like a completed transfer, it costs
    // its client no rate (a large file in small pieces is many requests).
    deps.slots.get(request)?.completed();
    transcript.info(pieceReceivedLine(outcome.pieceEndsAt));
    transcript.close();
    return;
  }
  if (outcome === 'sent') counters.transfers.completed += 1;
  else if (outcome === 'receivers-gone') counters.transfers.receiversGone += 1;
  else counters.transfers.failed += 1;
  if (outcome === 'sent') {
    // Before the transcript ends (which releases the slot): a completed transfer costs no rate.
    deps.slots.get(request)?.completed();
    transcript.info('Sent successfully!');
    transcript.info(tally.sentLine());
  } else if (outcome === 'receivers-gone') {
    // An error line: the sender's data did not all arrive, and a script reading the transcript must see it.
    transcript.error(new ReceiversGoneError().message);
  } else if (outcome === 'upload-failed') {
    transcript.error('Failed to send.');
  }
  transcript.close();
}
