import type { TunnelDirection } from '../../protocol/tunnel-layout.js';
import type { ChunkCipher } from '../format/index.js';
import type { TunnelKeys } from './tunnel-keys.js';
import {
  isLast,
  isRecordType,
  LENGTH_BYTES,
  MAX_PAYLOAD,
  RecordType,
  TunnelProtocolError,
} from './tunnel-records.js';
import { headerLength, openStream, PLAIN_HEADER_BYTES } from './tunnel-stream-header.js';

/** The largest record body: a whole payload, its type byte and a GCM tag. */
const MAX_BODY = 1 + MAX_PAYLOAD + 16;

/** What a reader hands on: each record, in order, awaited (a slow socket holds the pipe back). */
export type RecordHandler = (type: RecordType, payload: Uint8Array) => Promise<void>;

/**
 * One direction's incoming stream, fed the pipe's bytes as they come in pieces of any size: checks the
 * header, then cuts, opens and hands on records. Holds at most one record's bytes.
 */
export class RecordReader {
  private readonly pieces: Uint8Array[] = [];
  private held = 0;
  private headerBytes: number | undefined;
  private cipher: ChunkCipher | undefined;
  private opened = false;
  private counter = 0;
  private ended = false;
  /** Bytes of a plain DATA payload still to come. */
  private dataLeft = 0;

  constructor(
    private readonly keys: TunnelKeys | undefined,
    private readonly id: string,
    private readonly direction: TunnelDirection,
    private readonly onRecord: RecordHandler,
  ) {}

  /** Whether the stream's last record (FIN or RST) arrived. */
  get done(): boolean {
    return this.ended;
  }

  /**
   * Takes the next bytes of the stream.
   * @throws TunnelProtocolError for bytes that break the protocol or do not authenticate.
   */
  async push(piece: Uint8Array): Promise<void> {
    if (piece.byteLength === 0) return;
    if (this.ended) throw new TunnelProtocolError('the peer sent bytes after its last record');
    this.pieces.push(piece);
    this.held += piece.byteLength;
    for (;;) {
      if (!this.opened) {
        if (this.headerBytes === undefined) {
          if (this.held < PLAIN_HEADER_BYTES) return;
          this.headerBytes = headerLength(this.peek(PLAIN_HEADER_BYTES), this.keys);
        }
        if (this.held < this.headerBytes) return;
        this.cipher = await openStream(this.take(this.headerBytes), this.keys, this.id, this.direction);
        this.opened = true;
        continue;
      }
      if (this.dataLeft > 0) {
        if (this.held === 0) return;
        // A plain DATA payload is handed on in the pieces it arrived in: no copy to make it one.
        const piece = this.takeUpTo(this.dataLeft);
        this.dataLeft -= piece.byteLength;
        await this.onRecord(RecordType.data, piece);
        continue;
      }
      if (this.held < LENGTH_BYTES) return;
      const prefix = this.peek(LENGTH_BYTES);
      const length = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_BYTES).getUint32(0);
      if (length === 0 || length > MAX_BODY) {
        throw new TunnelProtocolError(`the peer sent a record of ${length} bytes (at most ${MAX_BODY})`);
      }
      if (!this.cipher) {
        if (this.held < LENGTH_BYTES + 1) return;
        if (this.peek(LENGTH_BYTES + 1)[LENGTH_BYTES] === RecordType.data && length > 1) {
          this.take(LENGTH_BYTES + 1);
          this.dataLeft = length - 1;
          continue;
        }
      }
      if (this.held < LENGTH_BYTES + length) return;
      this.take(LENGTH_BYTES);
      const body = await this.open(this.take(length));
      const type = body[0]!;
      if (!isRecordType(type))
        throw new TunnelProtocolError(`the peer sent a record of unknown type ${type}`);
      if (isLast(type)) this.ended = true;
      await this.onRecord(type, body.subarray(1));
      if (this.ended) {
        if (this.held > 0) throw new TunnelProtocolError('the peer sent bytes after its last record');
        return;
      }
    }
  }

  private async open(body: Uint8Array): Promise<Uint8Array> {
    const cipher = this.cipher;
    if (!cipher) return body;
    const counter = this.counter++;
    // Whether a record is the last is in its nonce (as in the file format) and its type is inside the
    // ciphertext: it opens under exactly one of the two nonces, "not last" being the usual case.
    const notLast = await cipher.open(counter, false, body);
    const inner = notLast ?? (await cipher.open(counter, true, body));
    if (!inner || inner.byteLength === 0) {
      throw new TunnelProtocolError(`record ${counter} does not authenticate: altered, reordered or forged`);
    }
    if (isLast(inner[0]!) === (notLast !== null)) {
      throw new TunnelProtocolError(`record ${counter} is sealed with the wrong end flag`);
    }
    return inner;
  }

  /** The first `n` held bytes without consuming them (a view where they lie in one piece). */
  private peek(n: number): Uint8Array {
    const first = this.pieces[0]!;
    if (first.byteLength >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let at = 0;
    for (const piece of this.pieces) {
      const part = piece.subarray(0, n - at);
      out.set(part, at);
      at += part.byteLength;
      if (at === n) break;
    }
    return out;
  }

  /** Consumes up to `n` held bytes from the first piece (a view, no copy). */
  private takeUpTo(n: number): Uint8Array {
    const first = this.pieces[0]!;
    if (first.byteLength <= n) {
      this.pieces.shift();
      this.held -= first.byteLength;
      return first;
    }
    this.pieces[0] = first.subarray(n);
    this.held -= n;
    return first.subarray(0, n);
  }

  /** Consumes the first `n` held bytes. */
  private take(n: number): Uint8Array {
    const out = this.peek(n);
    this.held -= n;
    let left = n;
    while (left > 0) {
      const first = this.pieces[0]!;
      if (first.byteLength <= left) {
        this.pieces.shift();
        left -= first.byteLength;
      } else {
        this.pieces[0] = first.subarray(left);
        left = 0;
      }
    }
    return out;
  }
}
