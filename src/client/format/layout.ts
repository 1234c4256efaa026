/**
 * Where every byte of a sealed or framed stream lies. Chunks have a fixed size (only the last is shorter),
 * so any offset maps to a chunk by arithmetic: a sender resumes from a chunk boundary without reading
 * what it sent before, and a receiver knows which chunk to ask for from the bytes it has kept.
 * Layouts are described byte by byte in docs/encryption-format.md.
 */

/** Plaintext bytes per chunk (sealed) or record (framed); only the last one is shorter. */
export const PLAIN_CHUNK = 65536;
/** AES-GCM tag bytes at the end of each sealed chunk. */
export const TAG_BYTES = 16;
/** Bytes of a sealed chunk that is not the last: its plaintext plus the tag. */
export const SEALED_CHUNK = PLAIN_CHUNK + TAG_BYTES;
/** Bytes of a sealed stream's header: magic 8, version 1, KDF 1, log2N 1, salt 16, nonce 16, MAC 32. */
export const HEADER_BYTES = 75;
/**
 * ASCII `EPTHEEND`, written after the last sealed chunk. It carries no secret and no authentication (the last
 * chunk's nonce flag does that); it only lets an opener tell a stream cut inside a chunk ('truncated') from
 * a last chunk whose bytes were altered ('tampered'), which the ciphertext alone cannot.
 */
export const END_MARKER: Uint8Array = new TextEncoder().encode('EPTHEEND');
/** Bytes of `END_MARKER`. */
export const END_MARKER_BYTES = 8;

/** Bytes of a framed stream's header: magic 8, version 1. */
export const FRAMED_HEADER_BYTES = 9;
/** Bytes of a framed record's length prefix. */
export const FRAMED_PREFIX_BYTES = 4;
/** Bytes of a framed record that is not the last: prefix plus payload. */
export const FRAMED_RECORD = FRAMED_PREFIX_BYTES + PLAIN_CHUNK;

/** Chunks (or records) a plaintext of this length is cut into: at least one, an empty one for no bytes. */
export function chunkCount(plainLength: number): number {
  checkLength(plainLength);
  return Math.max(1, Math.ceil(plainLength / PLAIN_CHUNK));
}

/** Bytes of the sealed stream of a plaintext of this length: header, chunks with their tags, end marker. */
export function sealedLength(plainLength: number): number {
  return HEADER_BYTES + plainLength + TAG_BYTES * chunkCount(plainLength) + END_MARKER_BYTES;
}

/** Offset of chunk `index`'s first byte in a sealed stream (for `index` = chunk count: the end marker's). */
export function sealedOffsetOfChunk(index: number, headerBytes = HEADER_BYTES): number {
  checkLength(index);
  return headerBytes + index * SEALED_CHUNK;
}

/**
 * The chunk that holds the byte at `offset` of a sealed stream (0 inside the header). A receiver that kept
 * `offset` bytes resumes from this chunk, at `sealedOffsetOfChunk(chunkAtSealedOffset(offset))` ≤ `offset`.
 */
export function chunkAtSealedOffset(offset: number, headerBytes = HEADER_BYTES): number {
  checkLength(offset);
  return Math.floor(Math.max(0, offset - headerBytes) / SEALED_CHUNK);
}

/** Bytes of the framed stream of a plaintext of this length: header, then each record's prefix and payload. */
export function framedLength(plainLength: number): number {
  return FRAMED_HEADER_BYTES + plainLength + FRAMED_PREFIX_BYTES * chunkCount(plainLength);
}

/** Offset of record `index`'s prefix in a framed stream. */
export function framedOffsetOfRecord(index: number): number {
  checkLength(index);
  return FRAMED_HEADER_BYTES + index * FRAMED_RECORD;
}

/** The record that holds the byte at `offset` of a framed stream (0 inside the header). */
export function recordAtFramedOffset(offset: number): number {
  checkLength(offset);
  return Math.floor(Math.max(0, offset - FRAMED_HEADER_BYTES) / FRAMED_RECORD);
}

function checkLength(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a byte count or index: ${n}`);
}

/**
 * The chunk (or record) a receiver resumes from after keeping `plainBytes` bytes of output: openers and
 * unframers emit whole chunks only, so a receiver that counts what it wrote (and cuts a half-written piece
 * back to `index × PLAIN_CHUNK`) asks for exactly the chunks it lacks.
 */
export function chunkAtPlainOffset(plainBytes: number): number {
  checkLength(plainBytes);
  return Math.floor(plainBytes / PLAIN_CHUNK);
}
