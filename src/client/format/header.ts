import type { ChunkCipher, ChunkCipherFactory } from './chunk-seal.js';
import { FormatError } from './errors.js';
import { checkLog2N, DEFAULT_LOG2N, type KeySource, passphraseKey, rawKey } from './key-source.js';
import { HEADER_BYTES } from './layout.js';
import { FORMAT_VERSION, FRAMED_MAGIC, MAGIC_BYTES, SEALED_MAGIC, startsWith } from './magic.js';
import { headerMacKey, payloadCipher } from './stream-keys.js';

/**
 * The sealed stream's header (docs/encryption-format.md has the table):
 *
 *   0  8  magic `EPSEALED`       9  1  KDF: 0x01 scrypt, 0x02 raw key   11 16 salt
 *   8  1  version 0x01          10  1  log2N (scrypt) or 0x00          27 16 stream nonce
 *                                                                      43 32 HMAC-SHA256 of bytes 0..42
 */
const KDF_AT = 9;
const LOG2N_AT = 10;
const SALT_AT = 11;
const NONCE_AT = 27;
const MAC_AT = 43;
/** Bytes of the salt and of the stream nonce. */
const SALT_BYTES = 16;
/** KDF identifiers (byte 9). */
const KDF_SCRYPT = 0x01;
const KDF_RAW_KEY = 0x02;

/** A header and the AES-GCM key of the chunks that follow it. */
export interface UnlockedHeader {
  /** The header's 75 bytes (a copy the caller owns). */
  readonly header: Uint8Array;
  /** The cipher of the payload key. */
  readonly key: ChunkCipher;
}

/** Options of a new header. */
export interface NewHeaderOptions {
  /** scrypt work factor for a passphrase (default `DEFAULT_LOG2N`); ignored for a raw key. */
  log2N?: number;
  /** Random bytes (default: `crypto.getRandomValues`); called for the salt, then for the stream nonce. */
  random?: (n: number) => Uint8Array;
  /** The AES-256-GCM implementation (default: Web Crypto). */
  cipher?: ChunkCipherFactory;
}

const defaultRandom = (n: number) => crypto.getRandomValues(new Uint8Array(n));

/** A fresh header for `source`, with a random salt and stream nonce, and its payload key. */
export async function newHeader(source: KeySource, options: NewHeaderOptions = {}): Promise<UnlockedHeader> {
  const random = options.random ?? defaultRandom;
  const scrypt = source.kind === 'passphrase';
  const log2N = scrypt ? (options.log2N ?? DEFAULT_LOG2N) : 0;
  if (scrypt) {
    checkLog2N(log2N);
    if (source.passphrase === '') throw new RangeError('the passphrase is empty');
  }
  const salt = take(random, SALT_BYTES);
  const nonce = take(random, SALT_BYTES);
  const header = new Uint8Array(HEADER_BYTES);
  header.set(SEALED_MAGIC, 0);
  header[MAGIC_BYTES] = FORMAT_VERSION;
  header[KDF_AT] = scrypt ? KDF_SCRYPT : KDF_RAW_KEY;
  header[LOG2N_AT] = log2N;
  header.set(salt, SALT_AT);
  header.set(nonce, NONCE_AT);
  const fileKey = await fileKeyOf(source, salt, log2N);
  const mac = await crypto.subtle.sign('HMAC', await headerMacKey(fileKey), header.subarray(0, MAC_AT));
  header.set(new Uint8Array(mac), MAC_AT);
  return { header, key: await payloadCipher(fileKey, nonce, options.cipher) };
}

/**
 * Checks a header's layout, then derives its file key from `source` and verifies its MAC: a wrong passphrase
 * or key fails here (`wrong-key`), before any chunk is read. Layout errors come first and cost nothing, so
 * a hostile header cannot make an opener run scrypt beyond `MAX_LOG2N`.
 */
export async function unlockHeader(
  bytes: Uint8Array,
  source: KeySource,
  cipher?: ChunkCipherFactory,
): Promise<UnlockedHeader> {
  const header = bytes.slice(0, HEADER_BYTES);
  checkMagic(header);
  if (header.byteLength < HEADER_BYTES) throw headerCut();
  if (header[MAGIC_BYTES] !== FORMAT_VERSION) {
    throw new FormatError(
      'unsupported',
      `this stream is sealed with format version ${header[MAGIC_BYTES]}, which this edgepipe does not read`,
    );
  }
  const kdf = header[KDF_AT];
  const log2N = header[LOG2N_AT]!;
  if (kdf === KDF_SCRYPT) checkLog2N(log2N);
  else if (kdf !== KDF_RAW_KEY || log2N !== 0) {
    throw new FormatError('unsupported', `this stream names an unknown key derivation (${kdf}/${log2N})`);
  }
  const wants = kdf === KDF_SCRYPT ? 'passphrase' : 'key';
  if (source.kind !== wants) {
    throw new FormatError(
      'wrong-key',
      wants === 'passphrase'
        ? 'this stream was sealed with a passphrase, not a key file'
        : 'this stream was sealed with a key file, not a passphrase',
    );
  }
  const fileKey = await fileKeyOf(source, header.subarray(SALT_AT, NONCE_AT), log2N);
  const macOk = await crypto.subtle.verify(
    'HMAC',
    await headerMacKey(fileKey),
    header.subarray(MAC_AT),
    header.subarray(0, MAC_AT),
  );
  if (!macOk) throw new FormatError('wrong-key', 'wrong passphrase or key');
  return { header, key: await payloadCipher(fileKey, header.subarray(NONCE_AT, MAC_AT), cipher) };
}

/**
 * Throws `not-this-format` unless the bytes (however few have arrived) agree with the sealed magic; a framed
 * stream is named as such, so a user knows no passphrase is needed.
 */
export function checkMagic(bytes: Uint8Array): void {
  const n = Math.min(bytes.byteLength, MAGIC_BYTES);
  if (startsWith(bytes, SEALED_MAGIC, n)) return;
  if (startsWith(bytes, FRAMED_MAGIC, n)) {
    throw new FormatError('not-this-format', 'this stream is not encrypted: it needs no passphrase or key');
  }
  throw new FormatError('not-this-format', 'this is not an edgepipe encrypted stream');
}

/** The error of a stream that ended inside its header. */
export function headerCut(): FormatError {
  return new FormatError('truncated', 'the stream ended inside its header: truncated');
}

function fileKeyOf(source: KeySource, salt: Uint8Array, log2N: number): Promise<Uint8Array> {
  return source.kind === 'passphrase'
    ? passphraseKey(source.passphrase, salt, log2N)
    : Promise.resolve(rawKey(source));
}

function take(random: (n: number) => Uint8Array, n: number): Uint8Array {
  const bytes = random(n);
  if (bytes.byteLength !== n) throw new RangeError(`random(${n}) returned ${bytes.byteLength} bytes`);
  return bytes.slice();
}
