import { type ByteTransform, drainingTransform } from './draining-transform.js';
import { FormatError } from './errors.js';
import { LAST_RECORD_FLAG } from './framer.js';
import { FRAMED_HEADER_BYTES, FRAMED_PREFIX_BYTES, PLAIN_CHUNK } from './layout.js';
import { FORMAT_VERSION, FRAMED_MAGIC, MAGIC_BYTES, SEALED_MAGIC, startsWith } from './magic.js';

/** Callbacks of an unframer. */
export interface UnframerOptions {
  /** Record `index` arrived whole and its payload was enqueued (`last`: the stream is complete). */
  onRecord?: (index: number, last: boolean) => void;
}

/**
 * Reads a whole framed stream: checks the header, then writes each record's payload once the record is
 * complete, one output piece per record. Errors with a FormatError: `truncated` when the input ends before the last record,
 * `tampered` for a malformed length or bytes after the last record, `not-this-format` / `unsupported` for
 * another header. Every whole record is delivered before the error (see `drainingTransform`). Holds at
 * most one record, plus one input piece's output.
 */
export function createUnframer(options: UnframerOptions = {}): ByteTransform {
  const header = new Uint8Array(FRAMED_HEADER_BYTES);
  let headerLength = 0;
  const records = new RecordReader(0, options);
  return drainingTransform({
    push(piece, emit) {
      if (headerLength < FRAMED_HEADER_BYTES) {
        const take = Math.min(piece.byteLength, FRAMED_HEADER_BYTES - headerLength);
        header.set(piece.subarray(0, take), headerLength);
        headerLength += take;
        checkFramedHeader(header.subarray(0, headerLength));
        piece = piece.subarray(take);
      }
      records.push(piece, emit);
    },
    finish() {
      if (headerLength < FRAMED_HEADER_BYTES) {
        throw new FormatError('truncated', 'the stream ended inside its header: truncated');
      }
      records.finish();
    },
  });
}

/**
 * Reads a framed stream from record `recordIndex` on: the input starts at `framedOffsetOfRecord(recordIndex)`,
 * without the header (a receiver resuming after it kept records 0 … recordIndex − 1).
 */
export function unframerFrom(recordIndex: number, options: UnframerOptions = {}): ByteTransform {
  if (!Number.isSafeInteger(recordIndex) || recordIndex < 0) {
    throw new RangeError(`bad record index ${recordIndex}`);
  }
  const records = new RecordReader(recordIndex, options);
  return drainingTransform({
    push: (piece, emit) => records.push(piece, emit),
    finish: () => records.finish(),
  });
}

/** Throws unless `bytes` (however many of the header's 9 have arrived) agree with a framed header. */
function checkFramedHeader(bytes: Uint8Array): void {
  const n = Math.min(bytes.byteLength, MAGIC_BYTES);
  if (!startsWith(bytes, FRAMED_MAGIC, n)) {
    throw startsWith(bytes, SEALED_MAGIC, n)
      ? new FormatError('not-this-format', 'this stream is encrypted: a passphrase or key is needed')
      : new FormatError('not-this-format', 'this is not an edgepipe framed stream');
  }
  if (bytes.byteLength > MAGIC_BYTES && bytes[MAGIC_BYTES] !== FORMAT_VERSION) {
    throw new FormatError(
      'unsupported',
      `this stream is framed with format version ${bytes[MAGIC_BYTES]}, which this edgepipe does not read`,
    );
  }
}

/** The records after the header: a prefix, then its payload, each possibly split across pieces. */
class RecordReader {
  private readonly prefix = new Uint8Array(FRAMED_PREFIX_BYTES);
  private prefixLength = 0;
  /** The payload being filled, once its prefix is read. */
  private payload: Uint8Array | undefined;
  private payloadLength = 0;
  private last = false;
  private done = false;

  constructor(
    private index: number,
    private readonly options: UnframerOptions,
  ) {}

  push(piece: Uint8Array, out: (bytes: Uint8Array) => void): void {
    let at = 0;
    while (at < piece.byteLength) {
      if (this.done) {
        throw new FormatError(
          'tampered',
          `data follows the last record (record ${this.index - 1}): the stream was extended`,
        );
      }
      if (!this.payload) {
        const take = Math.min(piece.byteLength - at, FRAMED_PREFIX_BYTES - this.prefixLength);
        this.prefix.set(piece.subarray(at, at + take), this.prefixLength);
        this.prefixLength += take;
        at += take;
        if (this.prefixLength === FRAMED_PREFIX_BYTES) this.startRecord();
      } else {
        const take = Math.min(piece.byteLength - at, this.payload.byteLength - this.payloadLength);
        this.payload.set(piece.subarray(at, at + take), this.payloadLength);
        this.payloadLength += take;
        at += take;
      }
      if (this.payload && this.payloadLength === this.payload.byteLength) this.endRecord(out);
    }
  }

  finish(): void {
    if (!this.done) {
      throw new FormatError(
        'truncated',
        `the stream ended before its last record: truncated at record ${this.index}`,
      );
    }
  }

  private startRecord(): void {
    const word = new DataView(this.prefix.buffer).getUint32(0);
    const length = word & ~LAST_RECORD_FLAG;
    this.last = word >= LAST_RECORD_FLAG;
    // Only the last record is short, and only a stream's only record is empty: anything else would let two
    // framings of one plaintext exist, and offsets would no longer be arithmetic.
    const valid = this.last
      ? length <= PLAIN_CHUNK && (length > 0 || this.index === 0)
      : length === PLAIN_CHUNK;
    if (!valid) {
      throw new FormatError(
        'tampered',
        `record ${this.index} has a malformed length (${this.last ? 'last, ' : ''}${length} bytes)`,
      );
    }
    this.payload = new Uint8Array(length);
    this.payloadLength = 0;
  }

  private endRecord(out: (bytes: Uint8Array) => void): void {
    if (this.payload!.byteLength > 0) out(this.payload!);
    this.options.onRecord?.(this.index, this.last);
    this.payload = undefined;
    this.prefixLength = 0;
    this.index++;
    if (this.last) this.done = true;
  }
}
