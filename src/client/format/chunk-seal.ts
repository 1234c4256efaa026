import { TAG_BYTES } from './layout.js';

/** Bytes of an AES-GCM nonce. */
export const NONCE_BYTES = 12;

/**
 * The nonce of chunk `counter`: an 11-byte big-endian counter, then 0x01 for the last chunk or 0x00 (age's
 * STREAM). Each chunk's position and "last" status are thus authenticated: a chunk moved, dropped, repeated
 * or appended opens under a different nonce and fails. Counters stay below 2^53 (JavaScript's safe integers,
 * 2^69 bytes of plaintext), so the top bytes are always zero.
 */
export function chunkNonce(counter: number, last: boolean): Uint8Array {
  if (!Number.isSafeInteger(counter) || counter < 0) throw new RangeError(`bad chunk counter ${counter}`);
  const nonce = new Uint8Array(NONCE_BYTES);
  let n = counter;
  for (let i = NONCE_BYTES - 2; n > 0; i--) {
    nonce[i] = n % 256;
    n = Math.floor(n / 256);
  }
  nonce[NONCE_BYTES - 1] = last ? 1 : 0;
  return nonce;
}

/**
 * What seals and opens chunks under one payload key: AES-256-GCM with `chunkNonce(counter, last)` and no
 * associated data, ciphertext then tag. Web Crypto by default (`webCryptoCipher`); a runtime may bring a
 * faster one producing the same bytes (the CLI uses node:crypto, with no thread hop and fewer copies per
 * 64 KiB chunk).
 */
export interface ChunkCipher {
  seal(counter: number, last: boolean, plaintext: Uint8Array): Promise<Uint8Array>;
  /** The plaintext, or `null` when the chunk does not authenticate under this counter and flag. */
  open(counter: number, last: boolean, sealed: Uint8Array): Promise<Uint8Array | null>;
}

/** Makes the cipher of a 32-byte payload key. */
export type ChunkCipherFactory = (payloadKey: Uint8Array) => Promise<ChunkCipher>;

/** The Web Crypto cipher; its key is imported non-extractable. */
export const webCryptoCipher: ChunkCipherFactory = async (payloadKey) => {
  const key = await crypto.subtle.importKey('raw', payloadKey as BufferSource, 'AES-GCM', false, [
    'encrypt',
    'decrypt',
  ]);
  return {
    seal: (counter, last, plaintext) => sealChunk(key, counter, last, plaintext),
    open: (counter, last, sealed) => openChunk(key, counter, last, sealed),
  };
};

/** Chunk `counter` sealed: AES-256-GCM ciphertext then its 16-byte tag, no associated data. */
export async function sealChunk(
  key: CryptoKey,
  counter: number,
  last: boolean,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  const iv = chunkNonce(counter, last) as BufferSource;
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, plaintext as BufferSource);
  return new Uint8Array(sealed);
}

/** Chunk `counter`'s plaintext, or `null` when it does not authenticate under this counter and flag. */
export async function openChunk(
  key: CryptoKey,
  counter: number,
  last: boolean,
  sealed: Uint8Array,
): Promise<Uint8Array | null> {
  if (sealed.byteLength < TAG_BYTES) return null;
  const iv = chunkNonce(counter, last) as BufferSource;
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, key, sealed as BufferSource));
  } catch {
    // Web Crypto reports a failed tag as an OperationError and nothing more specific.
    return null;
  }
}
