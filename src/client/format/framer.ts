import { ChunkCutter } from './chunk-cutter.js';
import { FRAMED_HEADER_BYTES, FRAMED_PREFIX_BYTES, PLAIN_CHUNK } from './layout.js';
import { FORMAT_VERSION, FRAMED_MAGIC, MAGIC_BYTES } from './magic.js';

/**
 * The framed format: plaintext cut into records so that a receiver notices a body cut short even when the
 * HTTP response ended cleanly (a proxy that closes instead of resetting). No secrecy, no integrity against
 * an attacker: only "did all of it arrive". Header: magic `EPFRAMED`, version 0x01. Each record: a 4-byte
 * big-endian prefix, top bit = last record, low 31 bits = payload length (65,536 except in the last record),
 * then the payload. docs/encryption-format.md has the details.
 */

/** The framed stream's 9-byte header. */
export function framedHeader(): Uint8Array {
  const header = new Uint8Array(FRAMED_HEADER_BYTES);
  header.set(FRAMED_MAGIC, 0);
  header[MAGIC_BYTES] = FORMAT_VERSION;
  return header;
}

/** Top bit of a record's prefix: this is the last record. */
export const LAST_RECORD_FLAG = 0x8000_0000;

/**
 * Frames the plaintext from byte `recordIndex × PLAIN_CHUNK` on (pieces of any size), writing the framed
 * stream from `framedOffsetOfRecord(recordIndex)` on: the header first when `recordIndex` is 0. Holds back
 * up to one record until it knows whether it is the last. Deterministic, like the sealer, so a resumed send
 * repeats the bytes the receiver missed.
 */
export function framerFrom(recordIndex: number): TransformStream<Uint8Array, Uint8Array> {
  if (!Number.isSafeInteger(recordIndex) || recordIndex < 0) {
    throw new RangeError(`bad record index ${recordIndex}`);
  }
  const cutter = new ChunkCutter(PLAIN_CHUNK, 0);
  let records = 0;
  return new TransformStream({
    start(controller) {
      if (recordIndex === 0) controller.enqueue(framedHeader());
    },
    transform(piece, controller) {
      for (const payload of cutter.push(piece)) {
        controller.enqueue(record(payload, false));
        records++;
      }
    },
    flush(controller) {
      const rest = cutter.rest();
      // As in the sealer: an empty last record only for an empty plaintext; resuming exactly at the end of a
      // plaintext of whole records leaves nothing to send.
      if (rest.byteLength > 0 || recordIndex + records === 0) controller.enqueue(record(rest, true));
    },
  });
}

function record(payload: Uint8Array, last: boolean): Uint8Array {
  const bytes = new Uint8Array(FRAMED_PREFIX_BYTES + payload.byteLength);
  new DataView(bytes.buffer).setUint32(0, (last ? LAST_RECORD_FLAG : 0) + payload.byteLength);
  bytes.set(payload, FRAMED_PREFIX_BYTES);
  return bytes;
}
