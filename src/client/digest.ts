import { sha256 } from '@noble/hashes/sha2.js';

/**
 * SHA-256 over a stream, fed piece by piece (Web Crypto only digests a whole buffer, which a multi-GiB
 * transfer cannot be).
 */
export class StreamDigest {
  private readonly hash = sha256.create();
  /** Bytes fed so far: a resumed transfer feeds only what lies past this. */
  fed = 0;

  update(bytes: Uint8Array): void {
    this.hash.update(bytes);
    this.fed += bytes.byteLength;
  }

  /** Feeds the part of `bytes` (which start at plaintext offset `offset`) not fed yet. */
  updateAt(offset: number, bytes: Uint8Array): void {
    const end = offset + bytes.byteLength;
    if (end <= this.fed) return;
    if (offset > this.fed) throw new Error(`digest gap: fed ${this.fed}, got bytes from ${offset}`);
    this.update(bytes.subarray(this.fed - offset));
  }

  hex(): string {
    return Array.from(this.hash.digest(), (b) => b.toString(16).padStart(2, '0')).join('');
  }
}
