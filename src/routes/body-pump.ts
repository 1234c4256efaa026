// The pump of a started transfer: a sender's body (or one piece of it) moved into the pipe chunk by chunk,
// held to the length it declared, with every way it can end named for the route to tell its sender.
import { ReceiversGoneError } from '../broker/errors.js';
import type { SenderSession } from '../broker/types.js';
import type { ByteSource } from '../byte-source.js';
import { BodyTooLargeError, ClientIdleError } from '../byte-source-guards.js';
import type { Transcript } from './transcript.js';

/**
 * Where this request's body sits in the transfer's body: whether its end is the body's (`Upload-Complete`),
 * the whole body's length when known (`Upload-Length`, or the transfer's Content-Length on a resume), and
 * the offset it starts at.
 */
export interface BodyEnd {
  readonly piece: boolean;
  readonly length: number | undefined;
  readonly from: number;
}

/**
 * Moves the body into the pipe chunk by chunk, waiting on the window; reports how it ended (a piece: where
 * the next one continues, every byte before it committed).
 */
export async function pump(
  body: ByteSource,
  end: BodyEnd,
  session: SenderSession,
  transcript: Transcript,
  left: ReceiversLeft,
  taken: (bytes: number) => void,
): Promise<'sent' | 'receivers-gone' | 'upload-failed' | 'cut' | { readonly pieceEndsAt: number }> {
  let at = end.from;
  // Receivers were told the length: a body that contradicts it fails rather than reach them cut or grown.
  const contradicts = (reason: string): 'cut' => {
    body.cancel();
    session.abort(reason);
    transcript.error(reason);
    return 'cut';
  };
  try {
    for (;;) {
      let chunk: Uint8Array | null;
      try {
        chunk = await body.read();
      } catch (error) {
        // The body was cancelled because nobody is left to read (a multipart part fails when its source ends).
        if (left.gone) return receiversGone(session);
        if (error instanceof BodyTooLargeError) {
          // Over the cap: the transfer fails for good (a resume would only hit the cap again).
          session.abort(error.message);
          transcript.error(error.message);
          return 'cut';
        }
        // The client's upload broke off or stalled: a backend that can resume holds the transfer a while.
        if (!(error instanceof ClientIdleError)) {
          session.interrupt('The sender aborted the upload.').catch(() => {});
          return 'upload-failed';
        }
        session.interrupt(error.message).catch(() => {});
        transcript.error(error.message);
        return 'cut';
      }
      if (left.gone) {
        body.cancel();
        return receiversGone(session);
      }
      if (chunk === null) break;
      if (end.length !== undefined && at + chunk.byteLength > end.length) {
        return contradicts(`The body goes on beyond its length of ${end.length} bytes; the transfer failed.`);
      }
      taken(chunk.byteLength);
      at += chunk.byteLength;
      await session.write(chunk);
    }
    if (end.piece) {
      // Answered only once every byte is committed and the sender is marked dropped: the next piece's
      // `?offset=N` then finds the transfer waiting for it at N.
      try {
        await session.interrupt('A piece of the body ended.');
      } catch {
        transcript.error('The piece could not be committed; ask HEAD for the committed offset.');
        return 'cut';
      }
      return { pieceEndsAt: at };
    }
    if (end.length !== undefined && at !== end.length) {
      return contradicts(
        `The body ended at byte ${at}, short of its length of ${end.length} bytes; the transfer failed.`,
      );
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

/**
 * Ends a transfer whose receivers have all left before the sender learnt it from a write: the session is
 * aborted so the backend frees the path at once (on Redis the abort frame settles the pipe's state).
 */
function receiversGone(session: SenderSession): 'receivers-gone' {
  session.abort(new ReceiversGoneError().message);
  return 'receivers-gone';
}

/**
 * Tells the pump when the last receiver of a running transfer has left for good. The pump learns it from a
 * failed `write`, but a sender that has nothing to send for a while (a stalled `tar`, a declared length not
 * yet reached) sits in the body's `read()`; cancelling the body ends that read at once, so the sender's
 * response ends with an error and its request is closed instead of hanging.
 */
export class ReceiversLeft {
  gone = false;
  private body: ByteSource | undefined;

  /** The body the pump reads; it is cancelled when no receiver is left. */
  watch(body: ByteSource): ByteSource {
    this.body = body;
    if (this.gone) body.cancel();
    return body;
  }

  noneLeft(): void {
    if (this.gone) return;
    this.gone = true;
    this.body?.cancel();
  }
}
