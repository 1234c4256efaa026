import { scryptAsync } from '@noble/hashes/scrypt.js';
import { FormatError } from './errors.js';

/**
 * Where a stream's 32-byte file key comes from: a passphrase stretched by scrypt with the header's salt, or a
 * key file's 32 bytes used as they are.
 */
export type KeySource = { kind: 'passphrase'; passphrase: string } | { kind: 'key'; key: Uint8Array };

/** Bytes of a file key (and of a key file's key). */
export const KEY_BYTES = 32;
/** scrypt's work factor a sealer uses unless told otherwise: N = 2^18 (256 MiB, about a second). */
export const DEFAULT_LOG2N = 18;
/** Below 2^10 a passphrase is barely stretched: such a header is refused as a downgrade, not obeyed. */
export const MIN_LOG2N = 10;
/** Above 2^20 (1 GiB with r = 8) an opener would let a stranger's header decide its memory: refused. */
export const MAX_LOG2N = 20;
/** scrypt's block size and parallelism, fixed by format version 1 (as in age). */
export const SCRYPT_R = 8;
export const SCRYPT_P = 1;

/** Throws unless `log2N` is a work factor this implementation accepts (`too-costly` above the limit). */
export function checkLog2N(log2N: number): void {
  if (!Number.isInteger(log2N) || log2N < MIN_LOG2N) {
    throw new FormatError(
      'unsupported',
      `scrypt work factor 2^${log2N} is below the minimum 2^${MIN_LOG2N}: refused as too weak`,
    );
  }
  if (log2N > MAX_LOG2N) {
    const mib = (128 * SCRYPT_R * 2 ** log2N) / 2 ** 20;
    throw new FormatError(
      'too-costly',
      `this stream asks for scrypt work factor 2^${log2N} (${mib} MiB of memory), above the limit 2^${MAX_LOG2N}`,
    );
  }
}

/**
 * The file key of a passphrase: scrypt(UTF-8 of the NFC form, salt, N = 2^log2N, r = 8, p = 1, 32 bytes).
 * NFC so that the same passphrase typed on two systems (composed or decomposed accents) gives one key.
 */
export async function passphraseKey(
  passphrase: string,
  salt: Uint8Array,
  log2N: number,
): Promise<Uint8Array> {
  checkLog2N(log2N);
  const saltHex = Array.from(salt, (byte) => byte.toString(16).padStart(2, '0')).join('');
  const last = lastDerived;
  if (last && last.passphrase === passphrase && last.salt === saltHex && last.log2N === log2N)
    return last.key;
  const key = derive(passphrase, salt, log2N);
  lastDerived = { passphrase, salt: saltHex, log2N, key };
  key.catch(() => {
    if (lastDerived?.key === key) lastDerived = undefined;
  });
  return key;
}

/**
 * The last passphrase key derived. Every resume of a sealed transfer opens or re-creates the same header,
 * and scrypt costs a second or more each time (a passphrase transfer with three cuts took 21 s against 4 s
 * with a key file); one entry, so a process holds no key beyond the one it uses.
 */
let lastDerived: { passphrase: string; salt: string; log2N: number; key: Promise<Uint8Array> } | undefined;

function derive(passphrase: string, salt: Uint8Array, log2N: number): Promise<Uint8Array> {
  const password = new TextEncoder().encode(passphrase.normalize('NFC'));
  return scryptAsync(password, salt, {
    N: 2 ** log2N,
    r: SCRYPT_R,
    p: SCRYPT_P,
    dkLen: KEY_BYTES,
    // noble counts 128·r·(N + p + 1) bytes; allow exactly what MAX_LOG2N needs.
    maxmem: 128 * SCRYPT_R * (2 ** MAX_LOG2N + SCRYPT_P + 1),
  });
}

/** A raw key source's key, checked for length. */
export function rawKey(source: { key: Uint8Array }): Uint8Array {
  if (source.key.byteLength !== KEY_BYTES) {
    throw new FormatError('bad-key-file', `a key must be ${KEY_BYTES} bytes, not ${source.key.byteLength}`);
  }
  return source.key;
}

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
// 32 bytes are 43 base64 digits and one '=' of padding; the URL-safe alphabet is accepted too.
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/;

/**
 * The key in a key file: exactly 32 raw bytes, or text (surrounding whitespace ignored) holding 64 hex digits
 * or the base64 of 32 bytes. Anything else is a `bad-key-file` error, never a guess.
 */
export function parseKeyFile(file: string | Uint8Array): Uint8Array {
  // Raw bytes are taken only at exactly 32: text forms are longer (64 or 43+ characters).
  if (typeof file !== 'string' && file.byteLength === KEY_BYTES) return file.slice();
  let text: string;
  try {
    text = typeof file === 'string' ? file : new TextDecoder('utf-8', { fatal: true }).decode(file);
  } catch {
    throw badKeyFile();
  }
  text = text.trim();
  if (HEX_KEY.test(text)) {
    const key = new Uint8Array(KEY_BYTES);
    for (let i = 0; i < KEY_BYTES; i++) key[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
    return key;
  }
  if (BASE64_KEY.test(text)) {
    const binary = atob(text.replaceAll('-', '+').replaceAll('_', '/'));
    if (binary.length === KEY_BYTES) return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }
  throw badKeyFile();
}

/** A key as key-file text: 64 lowercase hex digits and a newline. */
export function formatKeyFile(key: Uint8Array): string {
  rawKey({ key });
  return `${Array.from(key, (b) => b.toString(16).padStart(2, '0')).join('')}\n`;
}

function badKeyFile(): FormatError {
  return new FormatError(
    'bad-key-file',
    'the key file must hold 32 raw bytes, 64 hex digits or the base64 of 32 bytes',
  );
}
