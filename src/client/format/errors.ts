/**
 * What went wrong with a sealed or framed stream, as a code a caller branches on (never the message):
 * - `wrong-key`: the header's MAC did not verify (wrong passphrase or key, or an altered header), or the
 *   key source is of the other kind than the one the stream was sealed with;
 * - `tampered`: a chunk failed authentication, a record's length is malformed, or data follows the end;
 * - `truncated`: the input ended before the stream's end (a resume from the last good chunk may fix it);
 * - `not-this-format`: the bytes do not start with this format's magic;
 * - `unsupported`: a version, KDF or parameter this implementation does not speak;
 * - `bad-key-file`: a key file that is not 32 raw bytes, 64 hex digits or base64 of 32 bytes;
 * - `too-costly`: the header asks for more scrypt work (memory) than an opener accepts.
 */
export type FormatErrorCode =
  | 'wrong-key'
  | 'tampered'
  | 'truncated'
  | 'not-this-format'
  | 'unsupported'
  | 'bad-key-file'
  | 'too-costly';

/** The one error class of `src/client/format`; its message is one line meant for the user. */
export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(
    readonly code: FormatErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
