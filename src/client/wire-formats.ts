import { IntegrityError } from './errors.js';
import {
  type ChunkCipherFactory,
  chunkAtPlainOffset,
  chunkAtSealedOffset,
  createOpener,
  createUnframer,
  END_MARKER_BYTES,
  FRAMED_CONTENT_TYPE,
  FRAMED_HEADER_BYTES,
  FRAMED_PREFIX_BYTES,
  FRAMED_RECORD,
  framedLength,
  framedOffsetOfRecord,
  framerFrom,
  HEADER_BYTES,
  type KeySource,
  openerFrom,
  PLAIN_CHUNK,
  recordAtFramedOffset,
  SEALED_CHUNK,
  SEALED_CONTENT_TYPE,
  type Sealer,
  sealedLength,
  sealedOffsetOfChunk,
  TAG_BYTES,
  unframerFrom,
} from './format/index.js';
import type { ReceiveDecoding, SendEncoding } from './wire-format.js';

// The sealed and framed bodies on the wire (docs/encryption-format.md): both cut the plaintext into 64 KiB
// chunks, so a resume maps a wire offset to the chunk boundary at or below it and re-sends identical bytes.

/** A sealed (end-to-end encrypted) body, from one sealer (one header: one salt, one stream nonce). */
export function sealedEncoding(sealer: Sealer): SendEncoding {
  return {
    contentType: SEALED_CONTENT_TYPE,
    wireLength: (plain) => (plain === undefined ? undefined : sealedLength(plain)),
    from: (_source, wireOffset) => {
      const chunk = wireOffset < HEADER_BYTES ? 0 : chunkAtSealedOffset(wireOffset);
      return {
        wireOffset: chunk === 0 ? 0 : sealedOffsetOfChunk(chunk),
        plainOffset: chunk * PLAIN_CHUNK,
        encode: sealer.sealFrom(chunk),
      };
    },
  };
}

/** A framed body: the plaintext in records, so a receiver knows where it ends. */
export const framedEncoding: SendEncoding = {
  contentType: FRAMED_CONTENT_TYPE,
  wireLength: (plain) => (plain === undefined ? undefined : framedLength(plain)),
  from: (_source, wireOffset) => {
    const record = wireOffset < FRAMED_HEADER_BYTES ? 0 : recordAtFramedOffset(wireOffset);
    return {
      wireOffset: record === 0 ? 0 : framedOffsetOfRecord(record),
      plainOffset: record * PLAIN_CHUNK,
      encode: framerFrom(record),
    };
  },
};

/** A decoding that knows when its body's last chunk arrived. */
interface ChunkedDecoding extends ReceiveDecoding {
  readonly complete: () => boolean;
}

/**
 * Opens a sealed body with `key`. `savedHeader` is the header an earlier run of this receiver kept;
 * `onHeader` hears of it once it verified, so a restarted receiver can keep it.
 */
export function sealedDecoding(
  key: KeySource,
  savedHeader?: Uint8Array,
  onHeader?: (header: Uint8Array) => void,
  cipher?: ChunkCipherFactory,
): ChunkedDecoding {
  let header = savedHeader;
  let complete = false;
  const onChunk = (_index: number, last: boolean) => {
    if (last) complete = true;
  };
  return {
    resumePoint: (plain) => {
      const chunk = chunkAtPlainOffset(plain);
      return header && chunk > 0 ? sealedOffsetOfChunk(chunk) : 0;
    },
    decoderAt: async (plain) => {
      const chunk = chunkAtPlainOffset(plain);
      if (header && chunk > 0)
        return openerFrom(header, key, chunk, { onChunk, ...(cipher ? { cipher } : {}) });
      if (plain > 0) throw new IntegrityError('cannot continue a sealed body without its header');
      return createOpener(key, {
        onChunk,
        ...(cipher ? { cipher } : {}),
        onHeader: (verified) => {
          header = verified;
          onHeader?.(verified);
        },
      });
    },
    wholePlain: (plain) => chunkAtPlainOffset(plain) * PLAIN_CHUNK,
    plainLength: (wire) => {
      if (wire === undefined) return undefined;
      const chunks = wire - HEADER_BYTES - END_MARKER_BYTES;
      return chunks - TAG_BYTES * Math.max(1, Math.ceil(chunks / SEALED_CHUNK));
    },
    complete: () => complete,
  };
}

/** Reads a framed body. */
export function framedDecoding(): ChunkedDecoding {
  let complete = false;
  const onRecord = (_index: number, last: boolean) => {
    if (last) complete = true;
  };
  return {
    resumePoint: (plain) => {
      const record = chunkAtPlainOffset(plain);
      return record > 0 ? framedOffsetOfRecord(record) : 0;
    },
    decoderAt: async (plain) => {
      const record = chunkAtPlainOffset(plain);
      return record > 0 ? unframerFrom(record, { onRecord }) : createUnframer({ onRecord });
    },
    wholePlain: (plain) => chunkAtPlainOffset(plain) * PLAIN_CHUNK,
    plainLength: (wire) => {
      if (wire === undefined) return undefined;
      const records = wire - FRAMED_HEADER_BYTES;
      return records - FRAMED_PREFIX_BYTES * Math.max(1, Math.ceil(records / FRAMED_RECORD));
    },
    complete: () => complete,
  };
}

/** What a body's Content-Type announces: a sealed or framed body, or plain bytes. */
export function bodyKindOf(contentType: string | undefined): 'sealed' | 'framed' | 'plain' {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === SEALED_CONTENT_TYPE) return 'sealed';
  if (type === FRAMED_CONTENT_TYPE) return 'framed';
  return 'plain';
}
