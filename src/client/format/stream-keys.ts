import { type ChunkCipher, type ChunkCipherFactory, webCryptoCipher } from './chunk-seal.js';

/**
 * The two keys of a sealed stream, both HKDF-SHA256 (RFC 5869) of its file key, with distinct info strings
 * so that neither can stand in for the other: the header MAC key (empty salt, as in age) and the payload key
 * (salt = the header's random stream nonce, so that one key file never seals two streams under one key).
 */

/** HKDF info of the header MAC key (ASCII). */
export const HEADER_KEY_INFO = 'edgepipe-sealed-v1 header';
/** HKDF info of the payload (AES-256-GCM) key (ASCII). */
export const PAYLOAD_KEY_INFO = 'edgepipe-sealed-v1 payload';

/** 32 bytes of HKDF-SHA256(ikm = fileKey, salt, info). Exposed for test vectors; streams use CryptoKeys. */
export async function hkdf32(
  fileKey: Uint8Array,
  salt: Uint8Array,
  info: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const ikm = await crypto.subtle.importKey('raw', fileKey as BufferSource, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: salt as BufferSource, info: new TextEncoder().encode(info) },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

/** The HMAC-SHA256 key of the header MAC, non-extractable. */
export async function headerMacKey(fileKey: Uint8Array): Promise<CryptoKey> {
  const bytes = await hkdf32(fileKey, new Uint8Array(0), HEADER_KEY_INFO);
  return crypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
}

/** The AES-256-GCM key of the stream's chunks, as the cipher that uses it. */
export async function payloadCipher(
  fileKey: Uint8Array,
  streamNonce: Uint8Array,
  cipher: ChunkCipherFactory = webCryptoCipher,
): Promise<ChunkCipher> {
  return cipher(await hkdf32(fileKey, streamNonce, PAYLOAD_KEY_INFO));
}
