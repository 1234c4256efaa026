// docs/encryption-vectors.json: the bytes of the sealed format, for other implementations (the browser page).
// The file was written by this code once (WRITE_VECTORS=1 npx vitest run test/encryption-vectors.test.ts);
// this test recomputes it, and checks it against a second implementation written from the spec alone
// (Node's own crypto, constants spelled out here rather than imported), so the doc, the vectors and the code
// cannot drift apart.
import { createCipheriv, createHash, createHmac, hkdfSync, scryptSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  createOpener,
  createSealer,
  HEADER_KEY_INFO,
  type KeySource,
  PAYLOAD_KEY_INFO,
} from '../src/client/format/index.js';
import { passphraseKey } from '../src/client/format/key-source.js';
import { hkdf32 } from '../src/client/format/stream-keys.js';
import { expectSameBytes, pattern, run } from './helpers/format-streams.js';

const FILE = new URL('../docs/encryption-vectors.json', import.meta.url);
const LENGTHS = [0, 5, 65536, 2 * 65536 + 7];
/** Streams up to this length are given in full; longer ones by their SHA-256. */
const HEX_UP_TO = 512;

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const unhex = (text: string) => new Uint8Array(Buffer.from(text, 'hex'));
const iota = (from: number) => Uint8Array.from({ length: 16 }, (_, i) => from + i);

type Source = { kind: 'key'; keyHex: string } | { kind: 'passphrase'; passphrase: string; log2N: number };

interface Vector {
  name: string;
  source: Source;
  saltHex: string;
  streamNonceHex: string;
  fileKeyHex: string;
  headerKeyHex: string;
  payloadKeyHex: string;
  headerHex: string;
  streams: { plaintextLength: number; sealedLength: number; sealedSha256: string; sealedHex?: string }[];
}

const INPUTS: { name: string; source: Source; salt: Uint8Array; nonce: Uint8Array }[] = [
  {
    name: 'key file',
    source: { kind: 'key', keyHex: hex(Uint8Array.from({ length: 32 }, (_, i) => i)) },
    salt: iota(0xa0),
    nonce: iota(0xb0),
  },
  {
    name: 'passphrase',
    source: { kind: 'passphrase', passphrase: 'p\u00e2t\u00e9 de campagne', log2N: 10 },
    salt: iota(0xc0),
    nonce: iota(0xd0),
  },
];

const keySourceOf = (source: Source): KeySource =>
  source.kind === 'key' ? { kind: 'key', key: unhex(source.keyHex) } : source;

async function sha256(bytes: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as BufferSource)));
}

/** The vectors, computed by src/client/format. */
async function computeVectors(): Promise<Vector[]> {
  const vectors: Vector[] = [];
  for (const { name, source, salt, nonce } of INPUTS) {
    const randoms = [salt, nonce];
    const sealer = await createSealer(keySourceOf(source), {
      log2N: source.kind === 'passphrase' ? source.log2N : undefined,
      random: () => randoms.shift()!,
    });
    const fileKey =
      source.kind === 'key'
        ? unhex(source.keyHex)
        : await passphraseKey(source.passphrase, salt, source.log2N);
    const streams: Vector['streams'] = [];
    for (const length of LENGTHS) {
      const { output } = await run(sealer.sealFrom(0), pattern(length));
      streams.push({
        plaintextLength: length,
        sealedLength: output.byteLength,
        sealedSha256: await sha256(output),
        ...(output.byteLength <= HEX_UP_TO ? { sealedHex: hex(output) } : {}),
      });
    }
    vectors.push({
      name,
      source,
      saltHex: hex(salt),
      streamNonceHex: hex(nonce),
      fileKeyHex: hex(fileKey),
      headerKeyHex: hex(await hkdf32(fileKey, new Uint8Array(0), HEADER_KEY_INFO)),
      payloadKeyHex: hex(await hkdf32(fileKey, nonce, PAYLOAD_KEY_INFO)),
      headerHex: hex(sealer.header),
      streams,
    });
  }
  return vectors;
}

/** A second sealer, from docs/encryption-format.md only; it also tells its keys. */
function sealPerSpec(vector: Vector, plaintext: Uint8Array) {
  const salt = unhex(vector.saltHex);
  const nonce = unhex(vector.streamNonceHex);
  const { source } = vector;
  const fileKey =
    source.kind === 'key'
      ? unhex(source.keyHex)
      : scryptSync(Buffer.from(source.passphrase.normalize('NFC'), 'utf8'), salt, 32, {
          N: 2 ** source.log2N,
          r: 8,
          p: 1,
        });
  const headerKey = Buffer.from(
    hkdfSync('sha256', fileKey, Buffer.alloc(0), 'edgepipe-sealed-v1 header', 32),
  );
  const payloadKey = Buffer.from(hkdfSync('sha256', fileKey, nonce, 'edgepipe-sealed-v1 payload', 32));
  const body = Buffer.concat([
    Buffer.from('EPSEALED', 'ascii'),
    Buffer.from([1, source.kind === 'passphrase' ? 1 : 2, source.kind === 'passphrase' ? source.log2N : 0]),
    salt,
    nonce,
  ]);
  const parts = [body, createHmac('sha256', headerKey).update(body).digest()];
  const chunks = Math.max(1, Math.ceil(plaintext.byteLength / 65536));
  for (let i = 0; i < chunks; i++) {
    const iv = Buffer.alloc(12);
    iv.writeUIntBE(i, 5, 6); // the counter's low 6 bytes of 11 (bytes 0..10); byte 11 is the last flag
    iv[11] = i === chunks - 1 ? 1 : 0;
    const cipher = createCipheriv('aes-256-gcm', payloadKey, iv);
    parts.push(
      cipher.update(plaintext.subarray(i * 65536, (i + 1) * 65536)),
      cipher.final(),
      cipher.getAuthTag(),
    );
  }
  parts.push(Buffer.from('EPTHEEND', 'ascii'));
  return { sealed: Buffer.concat(parts), fileKey, headerKey, payloadKey };
}

describe('test vectors', () => {
  it('are what the code computes', async () => {
    const computed = { ...header(), vectors: await computeVectors() };
    if (process.env.WRITE_VECTORS === '1') writeFileSync(FILE, `${JSON.stringify(computed, null, 2)}\n`);
    expect(JSON.parse(readFileSync(FILE, 'utf8'))).toEqual(computed);
  });

  it('are what an implementation written from the spec computes', () => {
    const { vectors } = JSON.parse(readFileSync(FILE, 'utf8')) as { vectors: Vector[] };
    expect(vectors.length).toBe(INPUTS.length);
    for (const vector of vectors) {
      expect(vector.streams.map((s) => s.plaintextLength)).toEqual(LENGTHS);
      for (const stream of vector.streams) {
        const { sealed, fileKey, headerKey, payloadKey } = sealPerSpec(
          vector,
          pattern(stream.plaintextLength),
        );
        expect([hex(fileKey), hex(headerKey), hex(payloadKey)]).toEqual([
          vector.fileKeyHex,
          vector.headerKeyHex,
          vector.payloadKeyHex,
        ]);
        expect(hex(sealed.subarray(0, 75))).toBe(vector.headerHex);
        expect(sealed.byteLength).toBe(stream.sealedLength);
        expect(createHash('sha256').update(sealed).digest('hex')).toBe(stream.sealedSha256);
        if (stream.sealedHex !== undefined) expect(hex(sealed)).toBe(stream.sealedHex);
      }
    }
  });

  it('open to their plaintexts', async () => {
    const { vectors } = JSON.parse(readFileSync(FILE, 'utf8')) as { vectors: Vector[] };
    for (const vector of vectors) {
      for (const stream of vector.streams) {
        const sealed = stream.sealedHex
          ? unhex(stream.sealedHex)
          : sealPerSpec(vector, pattern(stream.plaintextLength)).sealed;
        const opened = await run(createOpener(keySourceOf(vector.source)), sealed);
        expect(opened.error).toBeUndefined();
        expectSameBytes(opened.output, pattern(stream.plaintextLength));
      }
    }
  });
});

function header() {
  return {
    format: 'edgepipe sealed stream, version 1 (docs/encryption-format.md)',
    plaintext: 'a plaintext of n bytes has byte i = i mod 251 (i from 0)',
    random: 'salt and streamNonce stand in for the 16 random bytes each that a sealer draws, salt first',
    encoding: 'byte strings in lowercase hex; sealedHex only for streams of at most 512 bytes',
  };
}
