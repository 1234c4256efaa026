/**
 * The request header with which a client declares that it can resume a transfer it drops out of
 * (`Range: bytes=N-` / `?offset=N` for a receiver, `HEAD` then `?offset=N` for a sender). Defined once here,
 * so the server and the edgepipe client (which always sends it) cannot disagree on its spelling.
 *
 * Why a declaration: holding a dropped party's place costs its peers a wait (`broker.resumeGraceMs`), which is
 * only worth it for a client that will come back. A plain `curl` sender that dies never does, and its
 * receivers would read the wait as a hang; a party without the header is therefore treated as gone at once,
 * as in piping-server. The name follows the `X-Edgepipe-*` headers the server already answers with
 * (`X-Edgepipe-State`, `X-Edgepipe-Resume-From`); one header serves both roles.
 */
export const RESUMABLE_HEADER = 'X-Edgepipe-Resumable';

/** The header's value for "I can resume"; `0` (or no header) says the opposite. */
export const RESUMABLE_YES = '1';

/**
 * What a request declares through `RESUMABLE_HEADER`: `true` for `1`, `false` for `0` or no header,
 * `undefined` for anything else (a malformed value, which the server refuses rather than guesses).
 */
export function declaredResumable(value: string | null): boolean | undefined {
  if (value === null) return false;
  const trimmed = value.trim();
  if (trimmed === RESUMABLE_YES) return true;
  if (trimmed === '0') return false;
  return undefined;
}

/** The query parameter of a resumed upload (`PUT /<path>?offset=N`) or receive (`GET /<path>?offset=N`). */
export const OFFSET_PARAM = 'offset';

/** `HEAD` answers: the committed offset a sender continues from (the IETF resumable-uploads draft's name). */
export const UPLOAD_OFFSET_HEADER = 'Upload-Offset';

/** `HEAD` answers: `idle`, `waiting`, `transferring` or `ended`. */
export const STATE_HEADER = 'X-Edgepipe-State';

/** `HEAD` answers: `connected` or `dropped`, while a transfer has a sender. */
export const SENDER_HEADER = 'X-Edgepipe-Sender';

/** A 416's answer: the first byte a receiver can still be served. */
export const RESUME_FROM_HEADER = 'X-Edgepipe-Resume-From';
