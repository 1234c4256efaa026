import { ChunkCutter } from './chunk-cutter.js';
import type { ChunkCipher } from './chunk-seal.js';
import { type NewHeaderOptions, newHeader, type UnlockedHeader, unlockHeader } from './header.js';
import type { KeySource } from './key-source.js';
import { END_MARKER, PLAIN_CHUNK } from './layout.js';

/** Seals one stream: its header is fixed once, so sealing the same plaintext again gives the same bytes. */
export interface Sealer {
  /**
   * The stream's header (75 bytes). A sender that may resume after a restart keeps it (with the file's
   * identity) and rebuilds this sealer with `sealerFromHeader`.
   */
  readonly header: Uint8Array;
  /**
   * Seals the plaintext from byte `chunkIndex × PLAIN_CHUNK` on (pieces of any size), writing the ciphertext
   * from `sealedOffsetOfChunk(chunkIndex)` on: the header first when `chunkIndex` is 0, then the chunks, then
   * the end marker. Deterministic, so a resumed send repeats exactly the bytes the receiver missed, and a key
   * and nonce never seal two plaintexts as long as the plaintext is unchanged (the caller checks that).
   * Holds back up to one chunk until it knows whether that chunk is the last.
   */
  sealFrom(chunkIndex: number): TransformStream<Uint8Array, Uint8Array>;
}

/** Options of `createSealer`. */
export type SealerOptions = NewHeaderOptions;

/** A sealer with a fresh header (random salt and stream nonce). Runs scrypt once for a passphrase. */
export async function createSealer(source: KeySource, options?: SealerOptions): Promise<Sealer> {
  return sealerOf(await newHeader(source, options));
}

/**
 * The sealer of a header made earlier (e.g. before a restart), checked against `source` (`wrong-key` if it
 * does not match). Its output is byte for byte that of the original sealer.
 */
export async function sealerFromHeader(
  header: Uint8Array,
  source: KeySource,
  options: Pick<SealerOptions, 'cipher'> = {},
): Promise<Sealer> {
  return sealerOf(await unlockHeader(header, source, options.cipher));
}

function sealerOf({ header, key }: UnlockedHeader): Sealer {
  return {
    header: header.slice(),
    sealFrom: (chunkIndex) => sealStream(header, key, chunkIndex),
  };
}

function sealStream(
  header: Uint8Array,
  key: ChunkCipher,
  first: number,
): TransformStream<Uint8Array, Uint8Array> {
  if (!Number.isSafeInteger(first) || first < 0) throw new RangeError(`bad chunk index ${first}`);
  const cutter = new ChunkCutter(PLAIN_CHUNK, 0);
  let counter = first;
  return new TransformStream({
    start(controller) {
      if (first === 0) controller.enqueue(header.slice());
    },
    async transform(piece, controller) {
      for (const chunk of cutter.push(piece)) {
        controller.enqueue(await key.seal(counter++, false, chunk));
      }
    },
    async flush(controller) {
      const rest = cutter.rest();
      // An empty tail is a chunk only for an empty plaintext. Resuming at chunk k of a plaintext of exactly
      // k chunks, chunk k − 1 was the last: only the end marker remains to be sent.
      if (rest.byteLength > 0 || counter === 0) controller.enqueue(await key.seal(counter, true, rest));
      controller.enqueue(END_MARKER.slice());
    },
  });
}
