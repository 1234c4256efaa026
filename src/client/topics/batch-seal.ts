import {
  type ChunkCipherFactory,
  createOpener,
  createSealer,
  FormatError,
  type KeySource,
  readHeaderKind,
} from '../format/index.js';
import { decodeRecords, encodeRecords } from './record-framing.js';

// A sealed batch (docs/topic-protocol.md, "Sealed batches"): the batch's records, length-prefixed, sealed
// as one stream of the client's encryption format (docs/encryption-format.md) and appended as one record.

/** Options of a `BatchSealer`. */
export interface BatchSealerOptions {
  readonly cipher?: ChunkCipherFactory;
  /** scrypt's work factor for a passphrase (default the format's). */
  readonly log2N?: number;
  /** Random bytes (default Web Crypto). */
  readonly random?: (n: number) => Uint8Array;
}

/**
 * Seals batches under one key. Every batch is a stream of its own (its own random stream nonce, hence its
 * own payload key), but all share one salt, so a passphrase is stretched by scrypt once per process rather
 * than once per batch (a second each at the default work factor); the stream nonce alone keeps payload
 * keys apart, as it does for every stream sealed with one key file.
 */
export class BatchSealer {
  private salt: Uint8Array | undefined;
  private readonly random: (n: number) => Uint8Array;

  constructor(
    private readonly key: KeySource,
    private readonly options: BatchSealerOptions = {},
  ) {
    this.random = options.random ?? ((n) => crypto.getRandomValues(new Uint8Array(n)));
  }

  /** The sealed stream of `records` (one record to append). */
  async seal(records: readonly Uint8Array[]): Promise<Uint8Array> {
    let calls = 0;
    // newHeader asks for the salt first, then the stream nonce.
    const random = (n: number): Uint8Array => {
      calls += 1;
      if (calls > 1) return this.random(n);
      this.salt ??= this.random(n);
      return this.salt;
    };
    const sealer = await createSealer(this.key, {
      random,
      ...(this.options.cipher ? { cipher: this.options.cipher } : {}),
      ...(this.options.log2N !== undefined ? { log2N: this.options.log2N } : {}),
    });
    const sealed = new Blob([encodeRecords(records) as BlobPart]).stream().pipeThrough(sealer.sealFrom(0));
    return new Uint8Array(await new Response(sealed).arrayBuffer());
  }
}

/** Whether a record is a sealed stream (its magic), so a consumer with a key knows to open it. */
export function isSealed(record: Uint8Array): boolean {
  return readHeaderKind(record) === 'sealed';
}

/**
 * The records inside a sealed batch.
 * @throws FormatError (wrong key, tampered, truncated) or FramingError
 */
export async function openBatch(
  record: Uint8Array,
  key: KeySource,
  options: { readonly cipher?: ChunkCipherFactory; readonly maxRecordBytes?: number } = {},
): Promise<Uint8Array[]> {
  const opener = createOpener(key, options.cipher ? { cipher: options.cipher } : {});
  const plain = new Response(new Blob([record as BlobPart]).stream().pipeThrough(opener)).arrayBuffer();
  try {
    return decodeRecords(new Uint8Array(await plain), options.maxRecordBytes);
  } catch (error) {
    if (error instanceof FormatError) throw error;
    throw new FormatError('tampered', `a sealed batch holds broken framing: ${(error as Error).message}`);
  }
}
