import type { Context } from 'hono';
import { PipeError, ReceiversGoneError } from '../broker/errors.js';
import type { PipeHeaders, SenderSession } from '../broker/types.js';
import { type ByteSource, skipBytes } from '../byte-source.js';
import { BodyTooLargeError, ClientIdleError, limitedUpload } from '../byte-source-guards.js';
import { DeadlineError, withDeadline } from '../clock.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { fail, failWithPipeError } from './http-error.js';
import { attachmentOf, MultipartError, multipartBoundaryOf, readFirstPart } from './multipart.js';
import { passthroughHeaders } from './passthrough-headers.js';
import { describeSenderEvent } from './pipe-events.js';
import { senderTargetOf } from './pipe-target.js';
import { senderResumeOf } from './resume-request.js';
import { Transcript } from './transcript.js';

const TRANSCRIPT_HEADERS = {
  ...CORS_ORIGIN,
  'Content-Type': 'text/plain; charset=utf-8',
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
    const { maxBodyBytes, idleTimeoutMs } = deps.config.limits;
    const declared = request.headers.get('content-length');
    if (maxBodyBytes !== undefined && declared !== null && Number(declared) > maxBodyBytes) {
      fail(413, `The body is ${declared} bytes; this server accepts at most ${maxBodyBytes}.`);
    }
    // The body as the transfer reads it: held to the size cap (what a resumed transfer already holds
    // counts) and to the idle timeout.
    const upload = (alreadyHeld: number) =>
      limitedUpload(deps.requestBody(request, c.env), {
        clock: deps.clock,
        idleMs: idleTimeoutMs,
        maxBytes: maxBodyBytes === undefined ? undefined : maxBodyBytes - alreadyHeld,
      });
    const transcript = new Transcript();
    let session: SenderSession;
    try {
      session = await deps.broker.openSender({
        ...target,
        resumeAt,
        onEvent: (event) => transcript.info(describeSenderEvent(event)),
      });
    } catch (error) {
      if (error instanceof PipeError) failWithPipeError(error);
      throw error;
    }
    if (resumeAt !== undefined && session.resumedAt !== undefined) {
      transcript.info(`Resuming the transfer at byte ${session.resumedAt}.`);
      deps.slots.get(request)?.transferring();
      const body = skipBytes(upload(resumeAt), session.resumedAt - resumeAt);
      void finishTransfer(deps, body, session, transcript);
      return deps.streamResponse(transcript, { headers: TRANSCRIPT_HEADERS });
    }
    transcript.info(`Waiting for ${target.receivers} receiver(s)...`);
    transcript.info(`${session.connectedAtOpen} receiver(s) has/have been connected.`);
    const body = upload(0);
    void transfer(deps, request, body, session, transcript, target.receivers, boundary);
    return deps.streamResponse(transcript, { headers: TRANSCRIPT_HEADERS });
  };
}

/** Runs one transfer to its end; every outcome ends in a transcript line, never in an unhandled rejection. */
async function transfer(
  deps: RouteDeps,
  request: Request,
  requestBody: ByteSource,
  session: SenderSession,
  transcript: Transcript,
  receivers: number,
  boundary: string | undefined,
): Promise<void> {
  try {
    await withDeadline(
      deps.clock,
      deps.config.limits.waitTimeoutMs,
      session.waitForReceivers(request.signal),
    );
  } catch (error) {
    session.release();
    if (error instanceof DeadlineError) {
      transcript.error(`No receiver came within ${Math.round(deps.config.limits.waitTimeoutMs / 1000)} s.`);
    } else if (error instanceof PipeError) {
      transcript.error(error.message);
    }
    transcript.close();
    return;
  }
  deps.slots.get(request)?.transferring();
  transcript.info(`Start sending to ${receivers} receiver(s)!`);

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
          contentDisposition: attachmentOf(part.headers.get('content-disposition')),
        },
        request.headers,
      );
    } else {
      headers = passthroughHeaders(
        {
          contentType: request.headers.get('content-type'),
          contentLength: request.headers.get('content-length'),
          contentDisposition: request.headers.get('content-disposition'),
        },
        request.headers,
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

  await finishTransfer(deps, body, session, transcript);
}

/** Streams the body of a started transfer and reports the outcome. */
async function finishTransfer(
  deps: RouteDeps,
  body: ByteSource,
  session: SenderSession,
  transcript: Transcript,
) {
  const { counters } = deps;
  const outcome = await pump(body, session, transcript, (bytes) => {
    counters.bytesIn += bytes;
  });
  if (outcome === 'sent') counters.transfers.completed += 1;
  else if (outcome === 'receivers-gone') counters.transfers.receiversGone += 1;
  else counters.transfers.failed += 1;
  if (outcome === 'sent') {
    transcript.info('Sent successfully!');
    transcript.info('All receiver(s) was/were received successfully.');
  } else if (outcome === 'receivers-gone') {
    transcript.info(new ReceiversGoneError().message);
  } else if (outcome === 'upload-failed') {
    transcript.error('Failed to send.');
  }
  transcript.close();
}

/** Moves the body into the pipe chunk by chunk, waiting on the window; reports how it ended. */
async function pump(
  body: ByteSource,
  session: SenderSession,
  transcript: Transcript,
  taken: (bytes: number) => void,
): Promise<'sent' | 'receivers-gone' | 'upload-failed' | 'cut'> {
  try {
    for (;;) {
      let chunk: Uint8Array | null;
      try {
        chunk = await body.read();
      } catch (error) {
        if (error instanceof BodyTooLargeError) {
          // Over the cap: the transfer fails for good (a resume would only hit the cap again).
          session.abort(error.message);
          transcript.error(error.message);
          return 'cut';
        }
        // The client's upload broke off or stalled: a backend that can resume holds the transfer a while.
        if (!(error instanceof ClientIdleError)) {
          session.interrupt('The sender aborted the upload.');
          return 'upload-failed';
        }
        session.interrupt(error.message);
        transcript.error(error.message);
        return 'cut';
      }
      if (chunk === null) break;
      taken(chunk.byteLength);
      await session.write(chunk);
    }
    await session.end();
    return 'sent';
  } catch (error) {
    // Nobody is left to read: stop reading the upload so the sender's request ends too.
    body.cancel();
    if (error instanceof ReceiversGoneError) return 'receivers-gone';
    session.abort('The transfer failed.');
    return 'upload-failed';
  }
}
