import { decode, encode } from '@msgpack/msgpack';

/**
 * Frames of a transfer's data stream. Each stream entry holds a msgpack header `[kind, seq, offset, extra?]`
 * (field `h`; `extra` is a data frame's send time or an abort frame's reason) and the payload as it is
 * (field `p`): encoding the payload into the msgpack buffer would copy
 * every byte once more (measured: the encoder's buffer growth alone was 2 % of the server's CPU). `seq`
 * numbers frames from 0 so a reader notices a gap (a trimmed chunk) instead of skipping bytes; `offset` is
 * the byte offset of the frame's first byte, which resume uses.
 */
export type Frame =
  | {
      readonly kind: 'data';
      readonly seq: number;
      readonly offset: number;
      readonly payload: Uint8Array;
      /** The sender's clock (ms since the epoch) when the frame left it: receivers measure latency. */
      readonly sentAt?: number;
    }
  | { readonly kind: 'end'; readonly seq: number; readonly offset: number }
  | { readonly kind: 'abort'; readonly seq: number; readonly offset: number; readonly reason: string };

const KIND = { data: 0, end: 1, abort: 2 } as const;

/**
 * Where a reader stands once it has read `frame`: a data frame's payload moves it on, and an end frame counts
 * as one byte, so "every receiver read the end" is a position like any other.
 */
export function offsetAfter(frame: Frame): number {
  if (frame.kind === 'data') return frame.offset + frame.payload.byteLength;
  return frame.kind === 'end' ? frame.offset + 1 : frame.offset;
}

/** The header of a frame; the payload travels beside it. */
export function encodeFrameHeader(frame: Frame): Uint8Array {
  switch (frame.kind) {
    case 'data':
      return encode(
        frame.sentAt === undefined
          ? [KIND.data, frame.seq, frame.offset]
          : [KIND.data, frame.seq, frame.offset, frame.sentAt],
      );
    case 'end':
      return encode([KIND.end, frame.seq, frame.offset]);
    case 'abort':
      return encode([KIND.abort, frame.seq, frame.offset, frame.reason]);
  }
}

/** A frame that does not decode is corruption, never data. */
export class FrameError extends Error {
  readonly code = 'FRAME_INVALID';
  override name = 'FrameError';
}

/** Reads a frame back from its stream entry's header and payload. */
export function decodeFrame(header: Uint8Array, payload: Uint8Array): Frame {
  const value = decode(header);
  if (!Array.isArray(value) || typeof value[1] !== 'number' || typeof value[2] !== 'number') {
    throw new FrameError('malformed frame');
  }
  const [kind, seq, offset, extra] = value as [number, number, number, unknown];
  if (kind === KIND.data) {
    return typeof extra === 'number'
      ? { kind: 'data', seq, offset, payload, sentAt: extra }
      : { kind: 'data', seq, offset, payload };
  }
  if (kind === KIND.end) return { kind: 'end', seq, offset };
  if (kind === KIND.abort)
    return { kind: 'abort', seq, offset, reason: typeof extra === 'string' ? extra : '' };
  throw new FrameError(`unknown frame kind ${String(kind)}`);
}

/** A Uint8Array as a Buffer over the same memory: ioredis sends Buffers as bytes, other views as text. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A field of a stream entry as ioredis returns it (`[name, value, name, value, ...]`); empty if absent. */
export function entryField(fields: Buffer[], name: string): Buffer {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === name) return fields[i + 1]!;
  return Buffer.alloc(0);
}
