import { readFileSync } from 'node:fs';
import { decodingFor } from '../client/decoding-choice.js';
import { IntegrityError, UsageError } from '../client/errors.js';
import {
  createSealer,
  FormatError,
  type KeySource,
  parseKeyFile,
  sealerFromHeader,
} from '../client/format/index.js';
import { plainEncoding, type ReceiveDecoding, type SendEncoding } from '../client/wire-format.js';
import { framedEncoding, sealedEncoding } from '../client/wire-formats.js';
import { nodeChunkCipher } from './node-chunk-cipher.js';
import { promptPassphrase } from './passphrase-prompt.js';
import type { TransferIo } from './transfer-outcome.js';

/** The flags that choose a key. */
export interface KeyFlags {
  readonly passphrase?: boolean;
  readonly keyFile?: string;
}

/** The key the flags name, or undefined for none: a passphrase (env, else asked) or a key file. */
export async function keyOf(
  flags: KeyFlags,
  io: TransferIo,
  confirm: boolean,
): Promise<KeySource | undefined> {
  if (flags.passphrase && flags.keyFile) throw new UsageError('give --passphrase or --key-file, not both');
  if (flags.keyFile) {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(flags.keyFile);
    } catch (error) {
      throw new UsageError(`--key-file: cannot read ${flags.keyFile}: ${(error as Error).message}`);
    }
    try {
      return { kind: 'key', key: parseKeyFile(bytes) };
    } catch (error) {
      throw new UsageError(`--key-file ${flags.keyFile}: ${(error as Error).message}`);
    }
  }
  if (!flags.passphrase) return undefined;
  const fromEnv = io.env.EDGEPIPE_PASSPHRASE;
  if (fromEnv !== undefined && fromEnv !== '') return { kind: 'passphrase', passphrase: fromEnv };
  const passphrase = await promptPassphrase('passphrase: ');
  if (!passphrase) throw new UsageError('the passphrase is empty');
  if (confirm && (await promptPassphrase('again: ')) !== passphrase) {
    throw new UsageError('the two passphrases differ');
  }
  return { kind: 'passphrase', passphrase };
}

/**
 * The sender's wire encoding: sealed with the key, framed, or plain. `savedHeader` (base64) re-creates an
 * earlier run's sealed stream byte for byte; the header to save for a later run comes back with it.
 */
export async function sendEncodingFor(
  key: KeySource | undefined,
  framed: boolean,
  savedHeader: string | undefined,
): Promise<{ readonly encoding: SendEncoding; readonly header?: string }> {
  if (key) {
    const sealer = savedHeader
      ? await sealerFromHeader(Buffer.from(savedHeader, 'base64'), key, { cipher: nodeChunkCipher }).catch(
          (error: unknown) => {
            throw asIntegrity(error);
          },
        )
      : await createSealer(key, { cipher: nodeChunkCipher });
    return { encoding: sealedEncoding(sealer), header: Buffer.from(sealer.header).toString('base64') };
  }
  return { encoding: framed ? framedEncoding : plainEncoding };
}

/** The receiver's decoding for what the sender announced (`decodingFor`, with the CLI's key flags). */
export function receiveDecodingFor(
  key: KeySource | undefined,
  contentType: string | undefined,
  savedHeader: string | undefined,
  onHeader?: (header: Uint8Array) => void,
): ReceiveDecoding {
  return decodingFor(key, contentType, {
    ...(savedHeader ? { savedHeader: Buffer.from(savedHeader, 'base64') } : {}),
    ...(onHeader ? { onHeader } : {}),
    cipher: nodeChunkCipher,
    askForKey: 'give --passphrase or --key-file',
  });
}

function asIntegrity(error: unknown): unknown {
  return error instanceof FormatError ? new IntegrityError(error.message, { cause: error }) : error;
}
