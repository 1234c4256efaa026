import type { PlainSource } from './plain-source.js';

/**
 * How a sender's plaintext becomes the bytes on the wire, and back to where a resume starts: as it is
 * (plain, readable by curl), framed (so a cut body shows even where HTTP ended it cleanly), or sealed
 * (end-to-end encrypted). Framed and sealed bytes are in fixed-size chunks, so a wire offset maps to a chunk
 * and a resume re-sends from the chunk boundary at or below what the broker holds: identical bytes.
 */
export interface SendEncoding {
  /** The Content-Type the wire bytes carry (framed and sealed bodies announce themselves). */
  readonly contentType: string | undefined;
  /** Wire length for a plaintext length (undefined: unknown). */
  wireLength(plainLength: number | undefined): number | undefined;
  /**
   * The wire bytes from the resume point at or below `wireOffset`: where they start on the wire, the
   * plaintext offset they start from, and the stream (the source read from that plaintext offset).
   */
  from(
    source: PlainSource,
    wireOffset: number,
  ): {
    readonly wireOffset: number;
    readonly plainOffset: number;
    readonly encode?: TransformStream<Uint8Array, Uint8Array>;
  };
}

/** Plain bytes: the wire is the plaintext. */
export const plainEncoding: SendEncoding = {
  contentType: undefined,
  wireLength: (plainLength) => plainLength,
  from: (_source, wireOffset) => ({ wireOffset, plainOffset: wireOffset }),
};

/**
 * How a receiver turns wire bytes back into plaintext, and where it asks to resume: at the wire offset of
 * the plaintext it has written for sure (a whole chunk for framed and sealed bodies).
 */
export interface ReceiveDecoding {
  /** The wire offset to continue from, given `plainWritten` bytes of plaintext already written. */
  resumePoint(plainWritten: number): number;
  /** The decoder for wire bytes starting at `resumePoint(plainWritten)`; undefined for plain bytes. */
  decoderAt(plainWritten: number): Promise<ReadableWritablePair<Uint8Array, Uint8Array> | undefined>;
  /** The plaintext a restarted receiver keeps of `plainWritten` bytes on disk: all, or its whole chunks. */
  wholePlain(plainWritten: number): number;
  /** The plaintext length of a wire length (for progress and ETA); undefined when unknown. */
  plainLength(wireLength: number | undefined): number | undefined;
  /**
   * Whether the body's own end arrived (a framed or sealed body's last chunk): then a connection lost
   * afterwards loses nothing. Always false for plain bytes, whose end is the HTTP body's.
   */
  complete(): boolean;
}

/** Plain bytes: the plaintext is the wire. */
export const plainDecoding: ReceiveDecoding = {
  resumePoint: (plainWritten) => plainWritten,
  decoderAt: async () => undefined,
  wholePlain: (plainWritten) => plainWritten,
  plainLength: (wireLength) => wireLength,
  complete: () => false,
};
