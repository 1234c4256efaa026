// Two request headers of the IETF resumable-uploads draft (draft-ietf-httpbis-resumable-upload) that a
// sender's PUT/POST may carry. Their values are RFC 8941 structured fields: a Boolean (`?0`, `?1`) and an
// Integer (digits only here: a length is never negative). Spelled once, here, for the server and the client.

/**
 * `Upload-Complete: ?0`: this request's body is one piece of the transfer's body and its end is not the
 * body's end (the sender continues with `?offset=N`). `?1`, or no header: the body ends with this request's.
 */
export const UPLOAD_COMPLETE_HEADER = 'Upload-Complete';

/**
 * `Upload-Length: L`: the whole transfer body's length in bytes, for a request whose own Content-Length does
 * not say it (a piece; a browser's streamed body, which cannot carry a Content-Length). Receivers get it as
 * their Content-Length.
 */
export const UPLOAD_LENGTH_HEADER = 'Upload-Length';

/** An RFC 8941 Boolean: `?1` → true, `?0` → false, absent → undefined; `null` for anything else. */
export function parseUploadComplete(value: string | null): boolean | undefined | null {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (trimmed === '?1') return true;
  if (trimmed === '?0') return false;
  return null;
}

/**
 * A byte length as an RFC 8941 Integer without a sign: at most 15 digits (RFC 8941's own bound, which keeps
 * it below 2^53, so the number is exact). Absent → undefined; `null` for anything else.
 */
export function parseUploadLength(value: string | null): number | undefined | null {
  if (value === null) return undefined;
  const trimmed = value.trim();
  return /^[0-9]{1,15}$/.test(trimmed) ? Number(trimmed) : null;
}
