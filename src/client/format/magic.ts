/**
 * The first bytes of each format, and the content types a sender announces. A receiver peeks at the magic to
 * tell an encrypted stream from a framed one from anything else (and to say "this is encrypted, give a
 * passphrase" instead of writing ciphertext to disk). See docs/encryption-format.md.
 */

/** `Content-Type` of a sealed (encrypted) stream. */
export const SEALED_CONTENT_TYPE = 'application/vnd.edgepipe.sealed';
/** `Content-Type` of a framed (plaintext, cut-detecting) stream. */
export const FRAMED_CONTENT_TYPE = 'application/vnd.edgepipe.framed';

/** ASCII `EPSEALED`: the first 8 bytes of a sealed stream. */
export const SEALED_MAGIC: Uint8Array = new TextEncoder().encode('EPSEALED');
/** ASCII `EPFRAMED`: the first 8 bytes of a framed stream. */
export const FRAMED_MAGIC: Uint8Array = new TextEncoder().encode('EPFRAMED');
/** Bytes of either magic; `readHeaderKind` needs this many to decide. */
export const MAGIC_BYTES = 8;

/** The version byte (after the magic) this implementation writes and reads, for both formats. */
export const FORMAT_VERSION = 1;

/**
 * What the first bytes of a stream are: `sealed`, `framed`, `neither`, or `incomplete` when fewer than
 * `MAGIC_BYTES` bytes were given and they are a prefix of a magic (read more, or at the end: neither).
 */
export function readHeaderKind(bytes: Uint8Array): 'sealed' | 'framed' | 'neither' | 'incomplete' {
  const n = Math.min(bytes.byteLength, MAGIC_BYTES);
  const sealed = startsWith(bytes, SEALED_MAGIC, n);
  const framed = startsWith(bytes, FRAMED_MAGIC, n);
  if (n < MAGIC_BYTES) return sealed || framed ? 'incomplete' : 'neither';
  if (sealed) return 'sealed';
  if (framed) return 'framed';
  return 'neither';
}

/** Whether the first `n` bytes of `bytes` and `magic` agree. */
export function startsWith(bytes: Uint8Array, magic: Uint8Array, n = magic.byteLength): boolean {
  if (bytes.byteLength < n) return false;
  for (let i = 0; i < n; i++) if (bytes[i] !== magic[i]) return false;
  return true;
}
