import { IntegrityError } from '../errors.js';

/**
 * The records a tunnel connection's pipe carries (docs/tunnel-protocol.md). Each direction is one stream:
 * a header, then records `length (4 bytes, big-endian) | body`, where the body is `type (1) | payload`,
 * sealed with AES-256-GCM when the tunnel is encrypted. Records are as small as what the socket gave, so an
 * interactive session's keystroke crosses at once (the file formats' fixed 64 KiB chunks would hold it back).
 */

/** Record types. */
export const RecordType = {
  /** Bytes of the connection. */
  data: 0x01,
  /** Nothing: sent when a direction is idle, so NATs keep the connection and the peer knows we live. */
  ping: 0x02,
  /** This direction ends cleanly (TCP half-close); the last record. */
  fin: 0x03,
  /** The connection is reset; the payload is the reason (UTF-8). The last record. */
  reset: 0x04,
  /** First record from the exposing side: the service accepted the connection. */
  open: 0x05,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

/** Most payload bytes in one record (a bigger socket read is cut into several). */
export const MAX_PAYLOAD = 65_536;

/** Bytes of a record's length prefix. */
export const LENGTH_BYTES = 4;

/** Whether a record of this type ends its stream. */
export function isLast(type: number): boolean {
  return type === RecordType.fin || type === RecordType.reset;
}

/** Whether `type` is a record type this version knows. */
export function isRecordType(type: number): type is RecordType {
  return type >= RecordType.data && type <= RecordType.open;
}

/** `type | payload` as one body. */
export function recordBody(type: RecordType, payload: Uint8Array | undefined): Uint8Array {
  const body = new Uint8Array(1 + (payload?.byteLength ?? 0));
  body[0] = type;
  if (payload) body.set(payload, 1);
  return body;
}

/** A body with its length prefix. */
export function withLength(body: Uint8Array): Uint8Array {
  const record = new Uint8Array(LENGTH_BYTES + body.byteLength);
  new DataView(record.buffer).setUint32(0, body.byteLength);
  record.set(body, LENGTH_BYTES);
  return record;
}

/**
 * Thrown when a tunnel stream is not what the protocol says or does not authenticate. An integrity failure:
 * final (the pipe's bytes are wrong, a resume would fetch the same), and the connection is reset with it.
 */
export class TunnelProtocolError extends IntegrityError {
  override readonly name = 'TunnelProtocolError';
}
