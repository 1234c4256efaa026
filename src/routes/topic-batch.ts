import { HTTPException } from 'hono/http-exception';
import { type ByteSource, streamOfSource } from '../byte-source.js';
import { RECORD_LENGTH_BYTES, RECORDS_TYPE } from '../protocol/topic-layout.js';
import { fail } from './http-error.js';

/** The bounds a batch is read within (`topics` in the config). */
export interface BatchLimits {
  readonly maxRecordBytes: number;
  readonly maxBatchBytes: number;
  readonly maxBatchRecords: number;
}

/** The media type of a `Content-Type` value, lower case, without parameters. */
function mediaTypeOf(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * Reads a request body whole, decompressing `Content-Encoding: gzip` (DecompressionStream, a web standard),
 * and refuses it (413) as soon as the decompressed bytes pass `maxBytes`: a small gzip bomb never becomes a
 * large buffer.
 */
export async function readBoundedBody(
  body: ByteSource,
  contentEncoding: string | null,
  maxBytes: number,
  what = 'batch',
): Promise<Uint8Array> {
  const encoding = (contentEncoding ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity' && encoding !== 'gzip') {
    body.cancel();
    fail(415, `Content-Encoding ${encoding.slice(0, 40)} is not supported (use gzip, or none).`);
  }
  const stream =
    encoding === 'gzip'
      ? streamOfSource(body).pipeThrough(
          new DecompressionStream('gzip') as ReadableWritablePair<Uint8Array, Uint8Array>,
        )
      : streamOfSource(body);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        void reader.cancel().catch(() => {});
        fail(
          413,
          `The ${what} is larger than ${maxBytes} bytes${encoding === 'gzip' ? ' decompressed' : ''}.`,
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof HTTPException) throw error;
    fail(400, encoding === 'gzip' ? 'The body is not valid gzip.' : 'The body could not be read.');
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/** Splits `bytes` into lines on `\n`, skipping empty ones (a `\r` before the `\n` stays in the line). */
export function linesOf(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(0x0a, start);
    const stop = end === -1 ? bytes.byteLength : end;
    if (stop > start) lines.push(bytes.slice(start, stop));
    if (end === -1) return lines;
    start = end + 1;
  }
}

/** Splits a length-prefixed batch: each record a 4-byte big-endian length, then its bytes. */
function framedRecordsOf(bytes: Uint8Array, limits: BatchLimits): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (at + RECORD_LENGTH_BYTES > bytes.byteLength) fail(400, 'The batch ends inside a record length.');
    const length = view.getUint32(at);
    at += RECORD_LENGTH_BYTES;
    if (length > limits.maxRecordBytes) fail(413, `A record is larger than ${limits.maxRecordBytes} bytes.`);
    if (at + length > bytes.byteLength) fail(400, 'The batch ends inside a record.');
    records.push(bytes.slice(at, at + length));
    at += length;
    if (records.length > limits.maxBatchRecords) {
      fail(413, `The batch has more than ${limits.maxBatchRecords} records.`);
    }
  }
  return records;
}

/**
 * The records of an append's body, framed by its `Content-Type` (docs/topic-protocol.md, "Appending"):
 * the length-prefixed binary type, or lines for anything else (NDJSON, text, and the form type curl sends
 * with `--data-binary` unless told otherwise). Every bound answers its own 4xx.
 */
export function recordsOf(bytes: Uint8Array, contentType: string | null, limits: BatchLimits): Uint8Array[] {
  const records = mediaTypeOf(contentType) === RECORDS_TYPE ? framedRecordsOf(bytes, limits) : linesOf(bytes);
  if (records.length === 0) fail(400, 'The batch holds no record.');
  if (records.length > limits.maxBatchRecords) {
    fail(413, `The batch has more than ${limits.maxBatchRecords} records.`);
  }
  for (const record of records) {
    if (record.byteLength > limits.maxRecordBytes) {
      fail(413, `A record is larger than ${limits.maxRecordBytes} bytes.`);
    }
  }
  return records;
}
