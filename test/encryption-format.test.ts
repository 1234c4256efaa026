// The sealed (encrypted) stream format: round trips, every kind of damage, resume, limits and key files.
// docs/encryption-format.md is the spec; test/encryption-vectors.test.ts pins its bytes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkCutter } from '../src/client/format/chunk-cutter.js';
import {
  chunkAtPlainOffset,
  chunkAtSealedOffset,
  createOpener,
  createSealer,
  END_MARKER_BYTES,
  FormatError,
  type FormatErrorCode,
  framedHeader,
  HEADER_BYTES,
  type KeySource,
  openerFrom,
  PLAIN_CHUNK,
  parseKeyFile,
  readHeaderKind,
  SEALED_CHUNK,
  type Sealer,
  sealedLength,
  sealedOffsetOfChunk,
  sealerFromHeader,
} from '../src/client/format/index.js';
import { chunksBefore, concat, expectSameBytes, pattern, readAll, run } from './helpers/format-streams.js';

const KEY: KeySource = { kind: 'key', key: pattern(32, 7) };
const OTHER_KEY: KeySource = { kind: 'key', key: pattern(32, 8) };
const PASS: KeySource = { kind: 'passphrase', passphrase: 'correct horse battery staple' };
/** Tests stretch passphrases at the minimum work factor (one test uses the default). */
const FAST = { log2N: 10 };

async function seal(
  sealer: Sealer,
  plaintext: Uint8Array,
  cuts: number[] = [],
  from = 0,
): Promise<Uint8Array> {
  const { output, error } = await run(sealer.sealFrom(from), plaintext.subarray(from * PLAIN_CHUNK), cuts);
  expect(error).toBeUndefined();
  return output;
}

function codeOf(error: unknown): FormatErrorCode | 'none' | 'other' {
  if (error === undefined) return 'none';
  return error instanceof FormatError ? error.code : 'other';
}

/** A sealed stream's chunks (without header and end marker), to rearrange. */
function chunksOf(sealed: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let at = HEADER_BYTES; at < sealed.byteLength - END_MARKER_BYTES; at += SEALED_CHUNK) {
    chunks.push(sealed.slice(at, Math.min(at + SEALED_CHUNK, sealed.byteLength - END_MARKER_BYTES)));
  }
  return chunks;
}

const endMarkerOf = (sealed: Uint8Array) => sealed.slice(sealed.byteLength - END_MARKER_BYTES);

const SIZES = [0, 1, 5, PLAIN_CHUNK - 1, PLAIN_CHUNK, PLAIN_CHUNK + 1, 2 * PLAIN_CHUNK, 2 * PLAIN_CHUNK + 7];

describe('round trip', () => {
  it.each([
    ['key', KEY],
    ['passphrase', PASS],
  ] as const)('opens what it sealed at chunk-boundary sizes (%s)', async (_, source) => {
    const sealer = await createSealer(source, FAST);
    for (const size of SIZES) {
      const plaintext = pattern(size, size);
      const sealed = await seal(sealer, plaintext);
      expect(sealed.byteLength).toBe(sealedLength(size));
      expect(sealed.subarray(0, HEADER_BYTES)).toEqual(sealer.header);
      const opened = await run(createOpener(source), sealed);
      expect(opened.error).toBeUndefined();
      expectSameBytes(opened.output, plaintext);
      // One output piece per chunk: what lets a receiver count whole chunks by the bytes it wrote.
      expect(opened.pieces.slice(0, -1).every((p) => p.byteLength === PLAIN_CHUNK)).toBe(true);
    }
  });

  it('gives the same bytes and plaintext whatever the piece boundaries', async () => {
    const sealer = await createSealer(KEY);
    const size = fc.oneof(
      fc.integer({ min: 0, max: 3 * PLAIN_CHUNK + 50 }),
      fc.constantFrom(...SIZES, 3 * PLAIN_CHUNK),
    );
    const cuts = fc.array(fc.integer({ min: 0, max: 3 * SEALED_CHUNK + HEADER_BYTES + 50 }), {
      maxLength: 12,
    });
    const whole = new Map<number, Uint8Array>();
    await fc.assert(
      fc.asyncProperty(size, cuts, cuts, async (n, sealCuts, openCuts) => {
        const plaintext = pattern(n);
        const sealed = await seal(sealer, plaintext, sealCuts);
        if (!whole.has(n)) whole.set(n, await seal(sealer, plaintext));
        expectSameBytes(sealed, whole.get(n)!);
        const opened = await run(createOpener(KEY), sealed, openCuts);
        expect(opened.error).toBeUndefined();
        expectSameBytes(opened.output, plaintext);
      }),
      { numRuns: 40 },
    );
  });

  it('reads a passphrase in its NFC form, however its accents were typed', async () => {
    const sealer = await createSealer({ kind: 'passphrase', passphrase: 'caf\u00e9 cr\u00e8me' }, FAST);
    const sealed = await seal(sealer, pattern(100));
    const opened = await run(
      createOpener({ kind: 'passphrase', passphrase: 'cafe\u0301 cre\u0300me' }),
      sealed,
    );
    expect(opened.error).toBeUndefined();
    expect(opened.output).toEqual(pattern(100));
  });

  it('seals each stream under a fresh salt and stream nonce', async () => {
    const [a, b] = await Promise.all([createSealer(KEY), createSealer(KEY)]);
    expect(a.header).not.toEqual(b.header);
    expect((await seal(a, pattern(10))).subarray(HEADER_BYTES)).not.toEqual(
      (await seal(b, pattern(10))).subarray(HEADER_BYTES),
    );
  });

  it('stretches a passphrase at the default work factor (2^18)', async () => {
    const sealer = await createSealer(PASS);
    expect(sealer.header[10]).toBe(18);
    const opened = await run(createOpener(PASS), await seal(sealer, pattern(5)));
    expect(opened.output).toEqual(pattern(5));
  });
});

describe('a wrong passphrase or key', () => {
  it('fails at the header, before any plaintext, however long the stream', async () => {
    const sealed = await seal(await createSealer(PASS, FAST), pattern(3 * PLAIN_CHUNK));
    let header: Uint8Array | undefined;
    const wrong = await run(
      createOpener(
        { kind: 'passphrase', passphrase: 'Correct horse battery staple' },
        {
          onHeader: (h) => {
            header = h;
          },
        },
      ),
      sealed,
    );
    expect(codeOf(wrong.error)).toBe('wrong-key');
    expect((wrong.error as Error).message).toBe('wrong passphrase or key');
    expect(wrong.output.byteLength).toBe(0);
    expect(header).toBeUndefined();
  });

  it('fails for a wrong key file', async () => {
    const sealed = await seal(await createSealer(KEY), pattern(10));
    const wrong = await run(createOpener(OTHER_KEY), sealed);
    expect(codeOf(wrong.error)).toBe('wrong-key');
    expect(wrong.output.byteLength).toBe(0);
  });

  it('names the kind of secret the stream wants', async () => {
    const byKey = await seal(await createSealer(KEY), pattern(10));
    const byPass = await seal(await createSealer(PASS, FAST), pattern(10));
    const a = await run(createOpener(PASS), byKey);
    const b = await run(createOpener(KEY), byPass);
    expect([codeOf(a.error), codeOf(b.error)]).toEqual(['wrong-key', 'wrong-key']);
    expect((a.error as Error).message).toMatch(/sealed with a key file/);
    expect((b.error as Error).message).toMatch(/sealed with a passphrase/);
  });

  it('refuses to re-create a sealer from a header it does not unlock', async () => {
    const sealer = await createSealer(KEY);
    await expect(sealerFromHeader(sealer.header, OTHER_KEY)).rejects.toMatchObject({ code: 'wrong-key' });
    await expect(openerFrom(sealer.header, OTHER_KEY, 1)).rejects.toMatchObject({ code: 'wrong-key' });
  });
});

/** What a one-byte change at `at` of a small sealed stream must be reported as. */
function expectedFlipCodes(at: number, length: number, source: KeySource): FormatErrorCode[] {
  if (at < 8) return ['not-this-format']; // magic
  if (at === 8) return ['unsupported']; // version
  if (at === 9) return ['unsupported', 'wrong-key']; // KDF: unknown, or the other kind
  if (at === 10) return source.kind === 'key' ? ['unsupported'] : ['wrong-key', 'too-costly', 'unsupported'];
  if (at < HEADER_BYTES) return ['wrong-key']; // salt, stream nonce, MAC
  if (at < length) return ['tampered']; // the chunk and the end marker
  return [];
}

describe('tampering', () => {
  it.each([
    ['key', KEY],
    ['passphrase', PASS],
  ] as const)(
    'detects every one-byte change of a small stream, before any output (%s)',
    async (_, source) => {
      const sealed = await seal(await createSealer(source, FAST), pattern(5));
      expect(sealed.byteLength).toBe(HEADER_BYTES + 5 + 16 + END_MARKER_BYTES);
      for (let at = 0; at < sealed.byteLength; at++) {
        for (const mask of [0x01, 0x80]) {
          const bad = sealed.slice();
          bad[at]! ^= mask;
          const opened = await run(createOpener(source), bad);
          expect({ at, mask, code: codeOf(opened.error) }).toEqual({
            at,
            mask,
            code: expect.toBeOneOf(expectedFlipCodes(at, sealed.byteLength, source)),
          });
          expect(opened.output.byteLength).toBe(0);
        }
      }
    },
  );

  it('writes nothing past the last chunk that authenticated', async () => {
    const plaintext = pattern(2 * PLAIN_CHUNK + 3000);
    const sealed = await seal(await createSealer(KEY), plaintext);
    const spots: [number, number][] = [];
    for (let chunk = 0; chunk < 3; chunk++) {
      const start = sealedOffsetOfChunk(chunk);
      const end = Math.min(start + SEALED_CHUNK, sealed.byteLength - END_MARKER_BYTES);
      for (const at of [start, start + 1000, end - 17, end - 16, end - 1]) spots.push([at, chunk]);
    }
    for (const [at, chunk] of spots) {
      const bad = sealed.slice();
      bad[at]! ^= 0x20;
      // One piece: the chunks before the bad one are delivered before the error all the same.
      const opened = await run(createOpener(KEY), bad);
      expect({ at, code: codeOf(opened.error) }).toEqual({ at, code: 'tampered' });
      expect((opened.error as Error).message).toBe(
        `chunk ${chunk} failed authentication: the data was altered in transit`,
      );
      expectSameBytes(opened.output, plaintext.subarray(0, chunksBefore(chunk)));
    }
  });

  it('detects chunks moved, dropped or repeated', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK + 100);
    const sealer = await createSealer(KEY);
    const sealed = await seal(sealer, plaintext);
    const [c0, c1, c2, c3] = chunksOf(sealed) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const end = endMarkerOf(sealed);
    const cases: [string, Uint8Array[], number][] = [
      ['0 and 1 swapped', [c1, c0, c2, c3], 0],
      ['2 and 3 swapped', [c0, c1, c3, c2], 2],
      ['1 dropped', [c0, c2, c3], 1],
      ['1 repeated', [c0, c1, c1, c2, c3], 2],
      ['last moved first', [c3, c0, c1, c2], 0],
    ];
    for (const [name, chunks, failsAt] of cases) {
      const opened = await run(createOpener(KEY), concat(sealer.header, ...chunks, end));
      expect({ name, code: codeOf(opened.error) }).toEqual({ name, code: 'tampered' });
      expectSameBytes(opened.output, plaintext.subarray(0, chunksBefore(failsAt)));
    }
  });

  it('detects a chunk from another stream under the same key', async () => {
    const plaintext = pattern(2 * PLAIN_CHUNK + 1);
    const a = await seal(await createSealer(KEY), plaintext);
    const b = await seal(await createSealer(KEY), plaintext);
    const spliced = concat(a.subarray(0, sealedOffsetOfChunk(1)), b.subarray(sealedOffsetOfChunk(1)));
    const opened = await run(createOpener(KEY), spliced);
    expect(codeOf(opened.error)).toBe('tampered');
    expectSameBytes(opened.output, plaintext.subarray(0, PLAIN_CHUNK));
  });

  it('detects data after the end (an extended stream)', async () => {
    for (const size of [5, 2 * PLAIN_CHUNK, 2 * PLAIN_CHUNK + 7]) {
      const plaintext = pattern(size);
      const sealed = await seal(await createSealer(KEY), plaintext);
      const [last] = chunksOf(sealed).slice(-1) as [Uint8Array];
      const extras: [string, Uint8Array][] = [
        ['1 byte', new Uint8Array([0])],
        ['3 bytes', new Uint8Array(3)],
        ['9 bytes', new Uint8Array(9)],
        ['a chunk of zeros', new Uint8Array(SEALED_CHUNK + 100)],
        ['the last chunk again', concat(last, endMarkerOf(sealed))],
        ['the whole stream again', sealed],
      ];
      for (const [name, extra] of extras) {
        const opened = await run(createOpener(KEY), concat(sealed, extra));
        expect({ size, name, code: codeOf(opened.error) }).toEqual({ size, name, code: 'tampered' });
        expect((opened.error as Error).message).toMatch(/the stream was extended/);
        // The last chunk is withheld (its stream is not what was sealed); the ones before are kept.
        expectSameBytes(
          opened.output,
          plaintext.subarray(0, chunksBefore(Math.ceil(size / PLAIN_CHUNK) - 1)),
        );
      }
    }
  });
});

describe('truncation', () => {
  it('reports a small stream cut anywhere as truncated, without output', async () => {
    const sealed = await seal(await createSealer(KEY), pattern(5));
    for (let cut = 0; cut < sealed.byteLength; cut++) {
      const opened = await run(createOpener(KEY), sealed.subarray(0, cut));
      expect({ cut, code: codeOf(opened.error) }).toEqual({ cut, code: 'truncated' });
      expect(opened.output.byteLength).toBe(0);
    }
  });

  it('reports a cut at a chunk boundary, inside a chunk or inside the end marker, keeping whole chunks', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK + 9);
    const sealed = await seal(await createSealer(KEY), plaintext);
    const cuts: [number, number][] = [];
    for (let chunk = 0; chunk <= 3; chunk++) {
      const start = sealedOffsetOfChunk(chunk);
      cuts.push(
        [start, chunk],
        [start + 1, chunk],
        [start + 8, chunk],
        [start + 9, chunk],
        [start + 16, chunk],
      );
      if (chunk < 3) cuts.push([start + 30_000, chunk], [start + SEALED_CHUNK - 1, chunk]);
    }
    // After the last chunk (inside or before the end marker): the last chunk is withheld, resumed from.
    for (let back = 1; back <= END_MARKER_BYTES; back++) cuts.push([sealed.byteLength - back, 3]);
    for (const [cut, kept] of cuts) {
      const opened = await run(createOpener(KEY), sealed.subarray(0, cut));
      expect({ cut, code: codeOf(opened.error) }).toEqual({ cut, code: 'truncated' });
      expect({ cut, kept: opened.output.byteLength }).toEqual({ cut, kept: chunksBefore(kept) });
    }
  });

  it('is not fooled by an end marker added after a cut at a chunk boundary (the last flag)', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK + 9);
    const sealed = await seal(await createSealer(KEY), plaintext);
    for (let kept = 1; kept <= 3; kept++) {
      const forged = concat(sealed.subarray(0, sealedOffsetOfChunk(kept)), endMarkerOf(sealed));
      const opened = await run(createOpener(KEY), forged);
      expect({ kept, code: codeOf(opened.error) }).toEqual({ kept, code: 'truncated' });
      expectSameBytes(opened.output, plaintext.subarray(0, chunksBefore(kept)));
    }
  });

  it('reports a stream cut inside its header as truncated, and an empty one too', async () => {
    const opened = await run(createOpener(KEY), new Uint8Array(0));
    expect(codeOf(opened.error)).toBe('truncated');
    expect((opened.error as Error).message).toMatch(/inside its header/);
  });
});

describe('resume', () => {
  it('re-seals from any chunk the very bytes of the whole stream, which open from there', async () => {
    const sealer = await createSealer(PASS, FAST);
    for (const size of [3 * PLAIN_CHUNK + 5, 2 * PLAIN_CHUNK]) {
      const plaintext = pattern(size, 3);
      const whole = await seal(sealer, plaintext);
      const chunks = Math.ceil(size / PLAIN_CHUNK);
      // Past the last chunk only for a plaintext of whole chunks: then only the end marker is left to send.
      for (let k = 0; k <= (size % PLAIN_CHUNK === 0 ? chunks : chunks - 1); k++) {
        // From chunk 0 the header comes first; from any other, the chunks at their offset in the whole.
        const tail = whole.subarray(sealedOffsetOfChunk(k));
        const resealed = await seal(sealer, plaintext, [PLAIN_CHUNK / 2, PLAIN_CHUNK + 3], k);
        expectSameBytes(resealed, k === 0 ? whole : tail, `size ${size}, from chunk ${k}`);
        if (k === chunks) continue; // a receiver never resumes past the last chunk
        const indices: number[] = [];
        const opener = await openerFrom(sealer.header, PASS, k, { onChunk: (i) => indices.push(i) });
        const opened = await run(opener, tail, [7]);
        expect(opened.error).toBeUndefined();
        expectSameBytes(opened.output, plaintext.subarray(chunksBefore(k)));
        expect(indices[0]).toBe(k);
        expect(indices.at(-1)).toBe(chunks - 1);
      }
    }
  });

  it('re-creates a sealer from its header after a restart, byte for byte', async () => {
    const plaintext = pattern(PLAIN_CHUNK + 3);
    const sealer = await createSealer(PASS, FAST);
    const again = await sealerFromHeader(sealer.header.slice(), PASS);
    expect(again.header).toEqual(sealer.header);
    expectSameBytes(await seal(again, plaintext), await seal(sealer, plaintext));
  });

  it('completes a receiver cut anywhere, from the chunk after the last one it wrote', async () => {
    const sealer = await createSealer(KEY);
    const plaintext = pattern(3 * PLAIN_CHUNK + 77);
    const whole = await seal(sealer, plaintext);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: whole.byteLength - 1 }), async (cut) => {
        let header: Uint8Array | undefined;
        const onHeader = (h: Uint8Array) => {
          header = h;
        };
        const first = await run(createOpener(KEY, { onHeader }), whole.subarray(0, cut));
        expect(codeOf(first.error)).toBe('truncated');
        if (!header) {
          expect(cut).toBeLessThan(HEADER_BYTES);
          return;
        }
        expect(header).toEqual(sealer.header);
        const k = chunkAtPlainOffset(first.output.byteLength);
        expect(k).toBeLessThanOrEqual(chunkAtSealedOffset(cut));
        const rest = await run(await openerFrom(header, KEY, k), whole.subarray(sealedOffsetOfChunk(k)));
        expect(rest.error).toBeUndefined();
        expectSameBytes(concat(first.output, rest.output), plaintext);
      }),
      { numRuns: 40 },
    );
  });

  it('maps offsets to chunks and back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (offset) => {
        const chunk = chunkAtSealedOffset(offset);
        expect(sealedOffsetOfChunk(chunk)).toBeLessThanOrEqual(Math.max(offset, HEADER_BYTES));
        if (offset >= HEADER_BYTES) expect(sealedOffsetOfChunk(chunk + 1)).toBeGreaterThan(offset);
      }),
    );
    expect(sealedLength(0)).toBe(HEADER_BYTES + 16 + END_MARKER_BYTES);
    expect(sealedLength(PLAIN_CHUNK)).toBe(HEADER_BYTES + SEALED_CHUNK + END_MARKER_BYTES);
    expect(sealedLength(PLAIN_CHUNK + 1)).toBe(HEADER_BYTES + SEALED_CHUNK + 17 + END_MARKER_BYTES);
  });
});

describe('limits', () => {
  it('refuses to seal with a work factor outside 2^10 … 2^20', async () => {
    await expect(createSealer(PASS, { log2N: 21 })).rejects.toMatchObject({ code: 'too-costly' });
    await expect(createSealer(PASS, { log2N: 9 })).rejects.toMatchObject({ code: 'unsupported' });
  });

  it('refuses a header that asks for more memory than 2^20 or less work than 2^10, before running scrypt', async () => {
    const sealed = await seal(await createSealer(PASS, FAST), pattern(5));
    for (const [log2N, code] of [
      [21, 'too-costly'],
      [63, 'too-costly'],
      [9, 'unsupported'],
      [0, 'unsupported'],
    ] as const) {
      const bad = sealed.slice();
      bad[10] = log2N;
      const opened = await run(createOpener(PASS), bad);
      expect({ log2N, code: codeOf(opened.error) }).toEqual({ log2N, code });
    }
  });

  it('refuses other versions and key derivations', async () => {
    const sealed = await seal(await createSealer(KEY), pattern(5));
    for (const [at, value] of [
      [8, 2],
      [9, 3],
      [10, 1], // a raw-key header has no work factor
    ] as const) {
      const bad = sealed.slice();
      bad[at] = value;
      const opened = await run(createOpener(KEY), bad);
      expect(codeOf(opened.error)).toBe('unsupported');
    }
  });

  it('holds at most a chunk and an end marker however the input is cut', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 * SEALED_CHUNK }), { maxLength: 8 }), (sizes) => {
        const cutter = new ChunkCutter(SEALED_CHUNK, END_MARKER_BYTES);
        const input = pattern(sizes.reduce((a, b) => a + b, 0));
        const out: Uint8Array[] = [];
        let at = 0;
        for (const size of sizes) {
          for (const chunk of cutter.push(input.subarray(at, at + size))) out.push(chunk.slice());
          at += size;
          expect(cutter.rest().byteLength).toBeLessThanOrEqual(SEALED_CHUNK + END_MARKER_BYTES);
        }
        expect(out.every((c) => c.byteLength === SEALED_CHUNK)).toBe(true);
        expectSameBytes(concat(...out, cutter.rest()), input);
        expect(cutter.rest().byteLength).toBeLessThanOrEqual(SEALED_CHUNK + END_MARKER_BYTES);
        expect(input.byteLength - out.length * SEALED_CHUNK).toBe(cutter.rest().byteLength);
        if (input.byteLength > SEALED_CHUNK + END_MARKER_BYTES) expect(out.length).toBeGreaterThan(0);
      }),
    );
  });

  it('delivers the chunks that authenticated before the error, even to a reader that comes late', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK + 3000);
    const bad = await seal(await createSealer(KEY), plaintext);
    bad[sealedOffsetOfChunk(2) + 5]! ^= 1;
    const opener = createOpener(KEY);
    // One write opens chunks 0 and 1 and fails at chunk 2 before anyone reads: a TransformStream would drop
    // the two queued chunks at the error.
    const failed = await opener.writable
      .getWriter()
      .write(bad)
      .catch((e: unknown) => e);
    expect(codeOf(failed)).toBe('tampered');
    const late = await readAll(opener.readable);
    expect(codeOf(late.error)).toBe('tampered');
    expectSameBytes(late.output, plaintext.subarray(0, chunksBefore(2)));
  });

  it("holds an opener's output until it is read (a write waits for its reader)", async () => {
    const sealed = await seal(await createSealer(KEY), pattern(4 * PLAIN_CHUNK + 1));
    const opener = createOpener(KEY);
    const writer = opener.writable.getWriter();
    let written = false;
    void writer.write(sealed).then(() => {
      written = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(written).toBe(false);
    const reader = opener.readable.getReader();
    for (let i = 0; i < 4; i++) expect((await reader.read()).value?.byteLength).toBe(PLAIN_CHUNK);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(written).toBe(true);
  });

  it('stops its writer when the reader cancels', async () => {
    const sealed = await seal(await createSealer(KEY), pattern(4 * PLAIN_CHUNK + 1));
    const opener = createOpener(KEY);
    const writing = opener.writable
      .getWriter()
      .write(sealed)
      .catch((e: unknown) => e);
    const reader = opener.readable.getReader();
    expect((await reader.read()).value?.byteLength).toBe(PLAIN_CHUNK);
    await reader.cancel('receiver gone');
    expect(await writing).toBe('receiver gone');
  });
});

describe('telling formats apart', () => {
  it('reads the kind of a stream from its magic', async () => {
    const sealed = await seal(await createSealer(KEY), pattern(5));
    expect(readHeaderKind(sealed)).toBe('sealed');
    expect(readHeaderKind(framedHeader())).toBe('framed');
    expect(readHeaderKind(sealed.subarray(0, 3))).toBe('incomplete');
    expect(readHeaderKind(new Uint8Array(0))).toBe('incomplete');
    expect(readHeaderKind(new TextEncoder().encode('hello, world'))).toBe('neither');
    expect(readHeaderKind(new TextEncoder().encode('EPX'))).toBe('neither');
  });

  it('refuses a framed or foreign stream as not this format, naming a framed one', async () => {
    const framed = await run(createOpener(KEY), concat(framedHeader(), new Uint8Array(100)));
    expect(codeOf(framed.error)).toBe('not-this-format');
    expect((framed.error as Error).message).toMatch(/not encrypted/);
    const text = await run(createOpener(KEY), new TextEncoder().encode('GET / HTTP/1.1\r\n'.repeat(10)));
    expect(codeOf(text.error)).toBe('not-this-format');
    const short = await run(createOpener(KEY), new TextEncoder().encode('hi'));
    expect(codeOf(short.error)).toBe('not-this-format');
  });
});

describe('key files', () => {
  const key = pattern(32, 200);
  const hex = Array.from(key, (b) => b.toString(16).padStart(2, '0')).join('');
  const base64 = btoa(String.fromCharCode(...key));

  it('reads 32 raw bytes, 64 hex digits or base64, around whitespace', () => {
    const text = new TextEncoder();
    for (const form of [
      key,
      hex,
      hex.toUpperCase(),
      `  ${hex}\n`,
      text.encode(`${hex}\r\n`),
      base64,
      `${base64}\n`,
      base64.replace(/=$/, ''),
      base64.replaceAll('+', '-').replaceAll('/', '_'),
      text.encode(`${base64}\n`),
    ]) {
      expect(parseKeyFile(form)).toEqual(key);
    }
  });

  it('refuses anything else with a clear error', () => {
    for (const form of [
      '',
      hex.slice(2),
      `${hex}00`,
      `${hex.slice(1)}g`,
      btoa(String.fromCharCode(...key.subarray(1))),
      new Uint8Array(31),
      new Uint8Array(33).fill(0xff),
      'correct horse battery staple',
    ]) {
      expect(() => parseKeyFile(form)).toThrow(
        expect.objectContaining({ code: 'bad-key-file', message: expect.stringMatching(/32 raw bytes/) }),
      );
    }
  });

  it('refuses a key source of the wrong length', async () => {
    await expect(createSealer({ kind: 'key', key: new Uint8Array(16) })).rejects.toMatchObject({
      code: 'bad-key-file',
    });
  });

  it('opens a stream with the key read back from its file', async () => {
    const sealed = await seal(await createSealer({ kind: 'key', key }), pattern(50));
    const opened = await run(createOpener({ kind: 'key', key: parseKeyFile(`${base64}\n`) }), sealed);
    expect(opened.output).toEqual(pattern(50));
  });
});
