// The sealed (encrypted) and framed (plaintext) stream formats of edgepipe's client; docs/encryption-format.md.

export {
  type ChunkCipher,
  type ChunkCipherFactory,
  chunkNonce,
  webCryptoCipher,
} from './chunk-seal.js';
export type { ByteTransform } from './draining-transform.js';
export { FormatError, type FormatErrorCode } from './errors.js';
export { framedHeader, framerFrom } from './framer.js';
export {
  DEFAULT_LOG2N,
  formatKeyFile,
  KEY_BYTES,
  type KeySource,
  MAX_LOG2N,
  MIN_LOG2N,
  parseKeyFile,
} from './key-source.js';
export {
  chunkAtPlainOffset,
  chunkAtSealedOffset,
  chunkCount,
  END_MARKER,
  END_MARKER_BYTES,
  FRAMED_HEADER_BYTES,
  FRAMED_PREFIX_BYTES,
  FRAMED_RECORD,
  framedLength,
  framedOffsetOfRecord,
  HEADER_BYTES,
  PLAIN_CHUNK,
  recordAtFramedOffset,
  SEALED_CHUNK,
  sealedLength,
  sealedOffsetOfChunk,
  TAG_BYTES,
} from './layout.js';
export {
  FRAMED_CONTENT_TYPE,
  FRAMED_MAGIC,
  readHeaderKind,
  SEALED_CONTENT_TYPE,
  SEALED_MAGIC,
} from './magic.js';
export { createOpener, type OpenerOptions, openerFrom } from './opener.js';
export { createSealer, type Sealer, type SealerOptions, sealerFromHeader } from './sealer.js';
export { HEADER_KEY_INFO, PAYLOAD_KEY_INFO } from './stream-keys.js';
export { createUnframer, type UnframerOptions, unframerFrom } from './unframer.js';
