import { ChunkCutter } from './chunk-cutter.js';
import type { ChunkCipher, ChunkCipherFactory } from './chunk-seal.js';
import { FormatError } from './errors.js';
import { END_MARKER, END_MARKER_BYTES, SEALED_CHUNK, TAG_BYTES } from './layout.js';

/** Callbacks of an opener: how a receiver learns what it may keep and where to resume. */
export interface OpenerOptions {
  /** The header's bytes, once its MAC verified (before any chunk); a receiver keeps them to resume. */
  onHeader?: (header: Uint8Array) => void;
  /**
   * Chunk `index` authenticated and its plaintext was queued for the reader, who gets it even if the stream
   * fails afterwards (`last`: the stream is complete). For progress: a receiver resumes from what it
   * actually wrote, `chunkAtPlainOffset(bytesWritten)`, which a crash between queue and disk cannot fool.
   */
  onChunk?: (index: number, last: boolean) => void;
  /** The AES-256-GCM implementation (default: Web Crypto). */
  cipher?: ChunkCipherFactory;
}

type Emit = (bytes: Uint8Array) => void;

/**
 * Opens the chunks after a header, from chunk `counter` on. Only authenticated plaintext leaves it; every
 * failure is one FormatError. A chunk followed by more than an end marker's worth of bytes must be a
 * non-last chunk; the tail at the end of input must be the last chunk and the end marker.
 */
export class ChunkOpener {
  private readonly cutter = new ChunkCutter(SEALED_CHUNK, END_MARKER_BYTES);

  constructor(
    private readonly key: ChunkCipher,
    private counter: number,
    private readonly options: OpenerOptions = {},
  ) {}

  /** Opens every chunk that `piece` completes. */
  async push(piece: Uint8Array, out: Emit): Promise<void> {
    for (const sealed of this.cutter.push(piece)) {
      const plaintext = await this.key.open(this.counter, false, sealed);
      if (!plaintext) throw await this.failedMidStream(sealed);
      this.emit(plaintext, false, out);
    }
  }

  /** At the end of input: opens the last chunk, or says why the tail is not one. */
  async finish(out: Emit): Promise<void> {
    const rest = this.cutter.rest();
    const marked = rest.byteLength >= TAG_BYTES + END_MARKER_BYTES && endsWithMarker(rest);
    if (marked) {
      const plaintext = await this.key.open(this.counter, true, rest.subarray(0, -END_MARKER_BYTES));
      if (plaintext) return this.emit(plaintext, true, out);
    }
    // Cut just after a whole chunk (or a few bytes into the next one): that chunk is still good to keep.
    if (rest.byteLength >= SEALED_CHUNK) {
      const plaintext = await this.key.open(this.counter, false, rest.subarray(0, SEALED_CHUNK));
      if (plaintext) {
        this.emit(plaintext, false, out);
        throw this.truncated();
      }
    }
    const length = await this.findLastChunk(rest);
    if (length < 0) throw marked ? this.tampered() : this.truncated();
    const tail = rest.subarray(length);
    if (tail.byteLength < END_MARKER_BYTES && isMarkerPrefix(tail)) throw this.truncated();
    if (tail.byteLength <= END_MARKER_BYTES) {
      throw new FormatError('tampered', `the end marker after chunk ${this.counter} was altered`);
    }
    throw this.extended();
  }

  private emit(plaintext: Uint8Array, last: boolean, out: Emit): void {
    if (plaintext.byteLength > 0) out(plaintext);
    this.options.onChunk?.(this.counter, last);
    this.counter++;
  }

  /** A full chunk that more bytes follow failed as a non-last chunk: altered, or the end was extended. */
  private async failedMidStream(sealed: Uint8Array): Promise<FormatError> {
    return (await this.findLastChunk(sealed)) >= 0 ? this.extended() : this.tampered();
  }

  /**
   * The length of an authentic last chunk at the start of `bytes`, or −1. Tried only on a failure, to name
   * it: where the end marker occurs, and at each length that leaves at most a marker's worth of bytes.
   */
  private async findLastChunk(bytes: Uint8Array): Promise<number> {
    const lengths = new Set<number>();
    for (let at = bytes.indexOf(END_MARKER[0]!); at >= 0; at = bytes.indexOf(END_MARKER[0]!, at + 1)) {
      if (endsWithMarker(bytes.subarray(0, at + END_MARKER_BYTES))) lengths.add(at);
    }
    for (let n = bytes.byteLength - END_MARKER_BYTES; n <= bytes.byteLength; n++) lengths.add(n);
    for (const n of lengths) {
      if (n < TAG_BYTES || n > SEALED_CHUNK) continue;
      if (await this.key.open(this.counter, true, bytes.subarray(0, n))) return n;
    }
    return -1;
  }

  private tampered(): FormatError {
    return new FormatError(
      'tampered',
      `chunk ${this.counter} failed authentication: the data was altered in transit`,
    );
  }

  private extended(): FormatError {
    return new FormatError(
      'tampered',
      `data follows the last chunk (chunk ${this.counter}): the stream was extended`,
    );
  }

  private truncated(): FormatError {
    return new FormatError(
      'truncated',
      `the stream ended before its last chunk: truncated at chunk ${this.counter}`,
    );
  }
}

function endsWithMarker(bytes: Uint8Array): boolean {
  if (bytes.byteLength < END_MARKER_BYTES) return false;
  const tail = bytes.subarray(bytes.byteLength - END_MARKER_BYTES);
  return tail.every((b, i) => b === END_MARKER[i]);
}

function isMarkerPrefix(bytes: Uint8Array): boolean {
  return bytes.every((b, i) => b === END_MARKER[i]);
}
