/**
 * Cuts a byte stream, arriving in pieces of any size, into chunks of `size` bytes, and holds back the tail
 * that may turn out to be the stream's last chunk: a chunk is released only once more than `lookahead`
 * bytes follow it. Whether a chunk is the last one is part of its nonce, so a sealer must know it before
 * sealing (lookahead 0: any further byte means "not last"), and an opener before opening (lookahead = the
 * end marker). At most `size + lookahead` bytes are held; pieces are sliced, not copied, when nothing is held.
 */
export class ChunkCutter {
  private readonly held: Uint8Array;
  private length = 0;

  constructor(
    private readonly size: number,
    private readonly lookahead: number,
  ) {
    this.held = new Uint8Array(size + lookahead);
  }

  /**
   * Takes a piece and yields each chunk now known to be followed by more than `lookahead` bytes. A yielded
   * view is valid only until the generator is resumed (use it, even across an await, then ask for the next).
   */
  *push(piece: Uint8Array): Generator<Uint8Array> {
    const { size, lookahead, held } = this;
    let at = 0;
    while (this.length + (piece.byteLength - at) > size + lookahead) {
      if (this.length === 0) {
        yield piece.subarray(at, at + size);
        at += size;
        continue;
      }
      if (this.length < size) {
        const take = size - this.length;
        held.set(piece.subarray(at, at + take), this.length);
        this.length += take;
        at += take;
      }
      yield held.subarray(0, size);
      held.copyWithin(0, size, this.length);
      this.length -= size;
    }
    held.set(piece.subarray(at), this.length);
    this.length += piece.byteLength - at;
  }

  /** The bytes held back (at most `size + lookahead`): at the end of input, the stream's tail. */
  rest(): Uint8Array {
    return this.held.subarray(0, this.length);
  }
}
