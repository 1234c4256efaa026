import { IntegrityError } from './errors.js';
import type { ChunkCipherFactory, KeySource } from './format/index.js';
import { plainDecoding, type ReceiveDecoding } from './wire-format.js';
import { bodyKindOf, framedDecoding, sealedDecoding } from './wire-formats.js';

/** What a receiver has for choosing its decoding, beside the key. */
export interface DecodingChoice {
  /** The sealed header an earlier run of this receiver kept (a restarted receiver continues with it). */
  readonly savedHeader?: Uint8Array;
  /** Hears of the sealed header once it verified, so a restarted receiver can keep it. */
  readonly onHeader?: (header: Uint8Array) => void;
  readonly cipher?: ChunkCipherFactory;
  /** How this client asks for a key, for the refusal of a sealed body without one ("give --passphrase"). */
  readonly askForKey: string;
}

/**
 * The receiver's decoding for what the sender announced (framed and sealed bodies say so in their
 * Content-Type). A sealed body without a key, or a key for a body that is not sealed, is refused before a
 * byte is written: the CLI and the page decide alike.
 * @throws IntegrityError
 */
export function decodingFor(
  key: KeySource | undefined,
  contentType: string | undefined,
  choice: DecodingChoice,
): ReceiveDecoding {
  const kind = bodyKindOf(contentType);
  if (kind === 'sealed') {
    if (!key) throw new IntegrityError(`the sender encrypted this body: ${choice.askForKey}`);
    return sealedDecoding(key, choice.savedHeader, choice.onHeader, choice.cipher);
  }
  if (key) {
    throw new IntegrityError('the sender did not encrypt this body, but a passphrase or key was given');
  }
  return kind === 'framed' ? framedDecoding() : plainDecoding;
}
