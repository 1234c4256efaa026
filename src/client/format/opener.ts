import { ChunkOpener, type OpenerOptions } from './chunk-opener.js';
import { type ByteTransform, drainingTransform } from './draining-transform.js';
import { checkMagic, headerCut, unlockHeader } from './header.js';
import type { KeySource } from './key-source.js';
import { HEADER_BYTES } from './layout.js';

export type { OpenerOptions } from './chunk-opener.js';

/**
 * Opens a whole sealed stream: reads the header and verifies it (a wrong passphrase or key fails with
 * `wrong-key` before anything is written), then writes each chunk's plaintext once it authenticated, one
 * output piece per chunk. Errors with a FormatError: `truncated` when the input ends before the last chunk
 * and end marker, `tampered` for an altered, moved or extra chunk, `not-this-format`, `unsupported` or
 * `too-costly` for a header it will not read. Every chunk that authenticated is delivered before the error.
 * Holds at most a header, one chunk and an end marker, plus one input piece's output.
 */
export function createOpener(source: KeySource, options: OpenerOptions = {}): ByteTransform {
  const header = new Uint8Array(HEADER_BYTES);
  let headerLength = 0;
  let chunks: ChunkOpener | undefined;
  return drainingTransform({
    async push(piece, emit) {
      if (!chunks) {
        const take = Math.min(piece.byteLength, HEADER_BYTES - headerLength);
        header.set(piece.subarray(0, take), headerLength);
        headerLength += take;
        checkMagic(header.subarray(0, headerLength));
        if (headerLength < HEADER_BYTES) return;
        const unlocked = await unlockHeader(header, source, options.cipher);
        options.onHeader?.(unlocked.header.slice());
        chunks = new ChunkOpener(unlocked.key, 0, options);
        piece = piece.subarray(take);
      }
      await chunks.push(piece, emit);
    },
    async finish(emit) {
      if (!chunks) throw headerCut();
      await chunks.finish(emit);
    },
  });
}

/**
 * Opens a sealed stream from chunk `chunkIndex` on, given its header (kept from an earlier attempt, e.g. via
 * `onHeader`): the input is the ciphertext from `sealedOffsetOfChunk(chunkIndex)` on, without the header.
 * The header is verified against `source` here, before the stream exists.
 */
export async function openerFrom(
  header: Uint8Array,
  source: KeySource,
  chunkIndex: number,
  options: OpenerOptions = {},
): Promise<ByteTransform> {
  if (!Number.isSafeInteger(chunkIndex) || chunkIndex < 0)
    throw new RangeError(`bad chunk index ${chunkIndex}`);
  const { key } = await unlockHeader(header, source, options.cipher);
  const chunks = new ChunkOpener(key, chunkIndex, options);
  return drainingTransform({
    push: (piece, emit) => chunks.push(piece, emit),
    finish: (emit) => chunks.finish(emit),
  });
}
