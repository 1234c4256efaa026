import type { TunnelDirection } from '../../protocol/tunnel-layout.js';
import type { ChunkCipher } from '../format/index.js';
import type { TunnelKeys } from './tunnel-keys.js';
import { TunnelProtocolError } from './tunnel-records.js';

// The first bytes of every tunnel stream: `EPTUNNEL`, version 1, mode (0 plain, 1 sealed); a sealed stream
// adds its 16-byte nonce and an HMAC-SHA256 over the bytes before it, its connection id and its direction,
// so a header copied onto another connection's pipe does not verify.

const MAGIC = new TextEncoder().encode('EPTUNNEL');
const VERSION = 0x01;
const PLAIN = 0x00;
const SEALED = 0x01;
const NONCE_BYTES = 16;
const MAC_BYTES = 32;
/** Bytes of a plain stream's header. */
export const PLAIN_HEADER_BYTES = MAGIC.byteLength + 2;
/** Bytes of a sealed stream's header. */
export const SEALED_HEADER_BYTES = PLAIN_HEADER_BYTES + NONCE_BYTES + MAC_BYTES;

/** A stream's header and, when sealed, the cipher of its records. */
export interface StreamStart {
  readonly header: Uint8Array;
  readonly cipher: ChunkCipher | undefined;
}

function macInput(start: Uint8Array, id: string, direction: TunnelDirection): Uint8Array<ArrayBuffer> {
  const tail = new TextEncoder().encode(`${id} ${direction}`);
  const input = new Uint8Array(start.byteLength + tail.byteLength);
  input.set(start);
  input.set(tail, start.byteLength);
  return input;
}

/** A new stream's header (a fresh random nonce when sealed). */
export async function startStream(
  keys: TunnelKeys | undefined,
  id: string,
  direction: TunnelDirection,
): Promise<StreamStart> {
  if (!keys) {
    const header = new Uint8Array(PLAIN_HEADER_BYTES);
    header.set(MAGIC);
    header[MAGIC.byteLength] = VERSION;
    header[MAGIC.byteLength + 1] = PLAIN;
    return { header, cipher: undefined };
  }
  const header = new Uint8Array(SEALED_HEADER_BYTES);
  header.set(MAGIC);
  header[MAGIC.byteLength] = VERSION;
  header[MAGIC.byteLength + 1] = SEALED;
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  header.set(nonce, PLAIN_HEADER_BYTES);
  const signed = header.subarray(0, PLAIN_HEADER_BYTES + NONCE_BYTES);
  const mac = await crypto.subtle.sign('HMAC', keys.headerKey, macInput(signed, id, direction));
  header.set(new Uint8Array(mac), PLAIN_HEADER_BYTES + NONCE_BYTES);
  return { header, cipher: await keys.streamCipher(nonce, id, direction) };
}

/**
 * How many header bytes a stream starting with `first` (at least PLAIN_HEADER_BYTES) has.
 * @throws TunnelProtocolError when it is no tunnel stream, another version, or not encrypted as this end is.
 */
export function headerLength(first: Uint8Array, keys: TunnelKeys | undefined): number {
  for (let i = 0; i < MAGIC.byteLength; i++) {
    if (first[i] !== MAGIC[i])
      throw new TunnelProtocolError('the peer sent something that is not a tunnel stream');
  }
  if (first[MAGIC.byteLength] !== VERSION) {
    throw new TunnelProtocolError(`the peer speaks tunnel version ${first[MAGIC.byteLength]}, this end 1`);
  }
  const mode = first[MAGIC.byteLength + 1];
  if (mode === SEALED && !keys) {
    throw new TunnelProtocolError('the peer encrypts this tunnel: give the same --passphrase or --key-file');
  }
  if (mode === PLAIN && keys) {
    throw new TunnelProtocolError(
      'the peer does not encrypt this tunnel: refusing plaintext (drop --passphrase on neither side, or give it on both)',
    );
  }
  if (mode !== PLAIN && mode !== SEALED) throw new TunnelProtocolError(`unknown tunnel stream mode ${mode}`);
  return mode === SEALED ? SEALED_HEADER_BYTES : PLAIN_HEADER_BYTES;
}

/**
 * Checks a whole header and gives the cipher of the records after it.
 * @throws TunnelProtocolError when a sealed header does not verify (another key, or another connection's).
 */
export async function openStream(
  header: Uint8Array,
  keys: TunnelKeys | undefined,
  id: string,
  direction: TunnelDirection,
): Promise<ChunkCipher | undefined> {
  if (!keys) return undefined;
  const signed = header.subarray(0, PLAIN_HEADER_BYTES + NONCE_BYTES);
  const mac = header.slice(PLAIN_HEADER_BYTES + NONCE_BYTES, SEALED_HEADER_BYTES);
  const good = await crypto.subtle.verify('HMAC', keys.headerKey, mac, macInput(signed, id, direction));
  if (!good) {
    throw new TunnelProtocolError(
      "the peer's stream does not verify: another passphrase or key, or not its connection",
    );
  }
  return keys.streamCipher(header.slice(PLAIN_HEADER_BYTES, PLAIN_HEADER_BYTES + NONCE_BYTES), id, direction);
}
