/** How a sender's body goes up: one streamed request (default), whole (a Blob, for a client that cannot stream a request: a browser over HTTP/1.1), or in pieces of at most `pieceBytes` wire bytes, each a request of its own, on a server that can resume. */
export type UploadMode =
  | { readonly kind: 'stream' }
  | { readonly kind: 'whole' }
  | { readonly kind: 'pieces'; readonly pieceBytes: number };

/**
 * The smallest piece taken. A framed or sealed body continues from the 64 KiB chunk boundary at or below
 * the committed offset, so a piece re-sends up to one chunk of the one before: a piece of at least two
 * chunks always moves the transfer on.
 */
export const MIN_PIECE_BYTES = 128 * 1024;
