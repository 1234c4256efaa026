import { RECORD_LENGTH_BYTES } from '../../protocol/topic-layout.js';

// The length-prefixed framing of a batch (docs/topic-protocol.md, "Appending"): each record a 4-byte
// big-endian length, then that many bytes. The same framing carries binary records on stdin and stdout
// (`--binary`) and the plaintext of a sealed batch.

/** A record longer than the bound, or input that ends inside a record. */
export class FramingError extends Error {
  constructor(
    readonly code: 'too-long' | 'truncated',
    message: string,
  ) {
    super(message);
    this.name = 'FramingError';
  }
}

/** Bytes `records` take framed. */
export function framedSize(records: readonly Uint8Array[]): number {
  let size = 0;
  for (const record of records) size += RECORD_LENGTH_BYTES + record.byteLength;
  return size;
}

/** `records` framed into one body. */
export function encodeRecords(records: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(framedSize(records));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const record of records) {
    view.setUint32(at, record.byteLength);
    out.set(record, at + RECORD_LENGTH_BYTES);
    at += RECORD_LENGTH_BYTES + record.byteLength;
  }
  return out;
}

/** The records of a whole framed body. @throws FramingError when it ends inside a record */
export function decodeRecords(body: Uint8Array, maxRecordBytes = Number.MAX_SAFE_INTEGER): Uint8Array[] {
  const decoder = new RecordDecoder(maxRecordBytes);
  const records = decoder.push(body);
  decoder.end();
  return records;
}

/**
 * Cuts framed records out of pieces as they arrive (stdin with `--binary`). Holds at most one record and
 * one prefix: a length above `maxRecordBytes` fails at once, before anything is buffered for it.
 */
export class RecordDecoder {
  private readonly prefix = new Uint8Array(RECORD_LENGTH_BYTES);
  private prefixLength = 0;
  private record: Uint8Array | undefined;
  private recordLength = 0;

  constructor(private readonly maxRecordBytes: number) {}

  /** The records that `piece` completes. */
  push(piece: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let at = 0;
    while (at < piece.byteLength) {
      if (!this.record) {
        const take = Math.min(RECORD_LENGTH_BYTES - this.prefixLength, piece.byteLength - at);
        this.prefix.set(piece.subarray(at, at + take), this.prefixLength);
        this.prefixLength += take;
        at += take;
        if (this.prefixLength < RECORD_LENGTH_BYTES) break;
        const length = new DataView(this.prefix.buffer).getUint32(0);
        if (length > this.maxRecordBytes) {
          throw new FramingError(
            'too-long',
            `a record of ${length} bytes is over the limit of ${this.maxRecordBytes}`,
          );
        }
        this.prefixLength = 0;
        this.record = new Uint8Array(length);
        this.recordLength = 0;
      }
      const take = Math.min(this.record.byteLength - this.recordLength, piece.byteLength - at);
      this.record.set(piece.subarray(at, at + take), this.recordLength);
      this.recordLength += take;
      at += take;
      if (this.recordLength === this.record.byteLength) {
        out.push(this.record);
        this.record = undefined;
      }
    }
    // A zero-length record completes with its prefix, even at the end of a piece.
    if (this.record && this.record.byteLength === 0) {
      out.push(this.record);
      this.record = undefined;
    }
    return out;
  }

  /** At the end of input. @throws FramingError when it ends inside a record */
  end(): void {
    if (this.record || this.prefixLength > 0) {
      throw new FramingError('truncated', 'the input ends inside a record');
    }
  }
}

/**
 * Cuts newline-delimited records out of pieces (stdin, a followed file): each line without its `\n`; empty
 * lines are skipped, as the server does. A line over `maxRecordBytes` is reported to `onTooLong` and skipped
 * up to its end rather than buffered.
 */
export class LineDecoder {
  private readonly held: Uint8Array[] = [];
  private heldBytes = 0;
  private skipping = false;

  constructor(
    private readonly maxRecordBytes: number,
    private readonly onTooLong: (bytes: number) => void,
  ) {}

  push(piece: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let start = 0;
    for (;;) {
      const nl = piece.indexOf(0x0a, start);
      const end = nl === -1 ? piece.byteLength : nl;
      this.hold(piece.subarray(start, end));
      if (nl === -1) break;
      this.emit(out);
      start = nl + 1;
    }
    return out;
  }

  /** The last line, if it had no `\n`. */
  end(): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.emit(out);
    return out;
  }

  private hold(bytes: Uint8Array): void {
    if (bytes.byteLength === 0 || this.skipping) return;
    if (this.heldBytes + bytes.byteLength > this.maxRecordBytes) {
      this.skipping = true;
      this.onTooLong(this.heldBytes + bytes.byteLength);
      this.held.length = 0;
      this.heldBytes = 0;
      return;
    }
    // Copied: the piece's buffer may be reused by whoever read it.
    this.held.push(bytes.slice());
    this.heldBytes += bytes.byteLength;
  }

  private emit(out: Uint8Array[]): void {
    if (!this.skipping && this.heldBytes > 0) {
      out.push(this.held.length === 1 ? this.held[0]! : concat(this.held, this.heldBytes));
    }
    this.held.length = 0;
    this.heldBytes = 0;
    this.skipping = false;
  }
}

function concat(pieces: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.byteLength;
  }
  return out;
}
