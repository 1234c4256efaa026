import type { PlainSink } from '../client/receive.js';

/** Chunks kept in the page's memory before they are handed to the browser's Blob store. */
const PENDING_BYTES = 8 * 1024 * 1024;

/**
 * Where the page's received plaintext goes: a Blob, built in steps of 8 MiB so the page's own memory stays
 * bounded (the browser keeps a large Blob's bytes outside the page, on disk when they are many), then saved
 * under the sender's file name or shown as a text.
 */
export class BlobSink implements PlainSink {
  private blob = new Blob([]);
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  async write(chunk: Uint8Array): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= PENDING_BYTES) this.settle();
  }

  /** Every byte written, as one Blob of `type`. */
  result(type: string): Blob {
    this.settle();
    return new Blob([this.blob], { type });
  }

  private settle(): void {
    if (this.pending.length === 0) return;
    this.blob = new Blob([this.blob, ...(this.pending as BlobPart[])]);
    this.pending = [];
    this.pendingBytes = 0;
  }
}
