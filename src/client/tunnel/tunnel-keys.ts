import { sha256 } from '@noble/hashes/sha2.js';
import type { TunnelDirection } from '../../protocol/tunnel-layout.js';
import {
  type ChunkCipher,
  type ChunkCipherFactory,
  DEFAULT_LOG2N,
  type KeySource,
  webCryptoCipher,
} from '../format/index.js';
import { passphraseKey, rawKey } from '../format/key-source.js';
import { hkdf32 } from '../format/stream-keys.js';

// An encrypted tunnel derives its key once per process (scrypt costs about a second and a half; per
// connection it would be the set-up latency), and a fresh payload key per stream from a random nonce.

const encoder = new TextEncoder();
const HEADER_INFO = 'edgepipe-tunnel-v1 header';
const PAYLOAD_INFO = 'edgepipe-tunnel-v1 payload';
const SALT_INFO = 'edgepipe-tunnel-v1 salt ';

/** The keys of one encrypted tunnel: what both ends derive from the passphrase or key file. */
export interface TunnelKeys {
  /** HMAC-SHA256 key of the stream headers. */
  readonly headerKey: CryptoKey;
  /** The cipher of one stream: bound to its connection and direction, so no stream opens as another. */
  streamCipher(nonce: Uint8Array, id: string, direction: TunnelDirection): Promise<ChunkCipher>;
}

/**
 * The scrypt salt of a passphrase tunnel: both ends must agree on it without talking, so it comes from the
 * namespace path (as the server sees it, percent-encoded). A salt per namespace still keeps one passphrase
 * on two tunnels from sharing a key, which is what a salt is for.
 */
export function tunnelSalt(namespacePath: string): Uint8Array {
  return sha256(encoder.encode(SALT_INFO + namespacePath)).subarray(0, 16);
}

/** Derives a tunnel's keys (scrypt at the file format's default work factor for a passphrase). */
export async function tunnelKeys(
  source: KeySource,
  namespacePath: string,
  cipher: ChunkCipherFactory = webCryptoCipher,
): Promise<TunnelKeys> {
  const tunnelKey =
    source.kind === 'passphrase'
      ? await passphraseKey(source.passphrase, tunnelSalt(namespacePath), DEFAULT_LOG2N)
      : rawKey(source);
  const headerBytes = await hkdf32(tunnelKey, new Uint8Array(0), HEADER_INFO);
  const headerKey = await crypto.subtle.importKey(
    'raw',
    headerBytes,
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign', 'verify'],
  );
  return {
    headerKey,
    streamCipher: async (nonce, id, direction) =>
      cipher(await hkdf32(tunnelKey, nonce, `${PAYLOAD_INFO} ${id} ${direction}`)),
  };
}
