// The framed (plaintext) stream format: a body cut short is noticed even when HTTP ended it cleanly.
// docs/encryption-format.md is the spec.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  chunkAtPlainOffset,
  createSealer,
  createUnframer,
  FormatError,
  FRAMED_HEADER_BYTES,
  FRAMED_RECORD,
  framedHeader,
  framedLength,
  framedOffsetOfRecord,
  framerFrom,
  PLAIN_CHUNK,
  recordAtFramedOffset,
  unframerFrom,
} from '../src/client/format/index.js';
import { chunksBefore, concat, expectSameBytes, pattern, run } from './helpers/format-streams.js';

async function frame(plaintext: Uint8Array, cuts: number[] = [], from = 0): Promise<Uint8Array> {
  const { output, error } = await run(framerFrom(from), plaintext.subarray(from * PLAIN_CHUNK), cuts);
  expect(error).toBeUndefined();
  return output;
}

const codeOf = (error: unknown) =>
  error === undefined ? 'none' : error instanceof FormatError ? error.code : 'other';

const SIZES = [0, 1, 5, PLAIN_CHUNK - 1, PLAIN_CHUNK, PLAIN_CHUNK + 1, 2 * PLAIN_CHUNK, 2 * PLAIN_CHUNK + 7];

describe('framed round trip', () => {
  it('writes the documented bytes for a small plaintext', async () => {
    expect(await frame(pattern(5))).toEqual(
      concat(new TextEncoder().encode('EPFRAMED'), new Uint8Array([1, 0x80, 0, 0, 5]), pattern(5)),
    );
    expect(await frame(new Uint8Array(0))).toEqual(concat(framedHeader(), new Uint8Array([0x80, 0, 0, 0])));
  });

  it('reads back what it framed at chunk-boundary sizes, one output piece per record', async () => {
    for (const size of SIZES) {
      const plaintext = pattern(size, 1);
      const framed = await frame(plaintext);
      expect(framed.byteLength).toBe(framedLength(size));
      const read = await run(createUnframer(), framed);
      expect(read.error).toBeUndefined();
      expectSameBytes(read.output, plaintext, `size ${size}`);
      expect(read.pieces.slice(0, -1).every((p) => p.byteLength === PLAIN_CHUNK)).toBe(true);
    }
  });

  it('gives the same bytes whatever the piece boundaries', async () => {
    const size = fc.oneof(fc.integer({ min: 0, max: 3 * PLAIN_CHUNK + 50 }), fc.constantFrom(...SIZES));
    const cuts = fc.array(fc.integer({ min: 0, max: 3 * FRAMED_RECORD + 50 }), { maxLength: 12 });
    await fc.assert(
      fc.asyncProperty(size, cuts, cuts, async (n, frameCuts, readCuts) => {
        const plaintext = pattern(n);
        const framed = await frame(plaintext, frameCuts);
        expectSameBytes(framed, await frame(plaintext));
        const read = await run(createUnframer(), framed, readCuts);
        expect(read.error).toBeUndefined();
        expectSameBytes(read.output, plaintext);
      }),
      { numRuns: 40 },
    );
  });
});

describe('framed damage', () => {
  it('reports a small stream cut anywhere as truncated, without output', async () => {
    const framed = await frame(pattern(5));
    for (let cut = 0; cut < framed.byteLength; cut++) {
      const read = await run(createUnframer(), framed.subarray(0, cut));
      expect({ cut, code: codeOf(read.error) }).toEqual({ cut, code: 'truncated' });
      expect(read.output.byteLength).toBe(0);
    }
  });

  it('reports a cut at or inside a record as truncated, keeping the whole records before it', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK + 9);
    const framed = await frame(plaintext);
    for (let record = 0; record <= 3; record++) {
      const start = framedOffsetOfRecord(record);
      for (const cut of [
        start,
        start + 2,
        start + 4,
        start + 5,
        Math.min(start + 30_000, framed.byteLength - 1),
      ]) {
        const read = await run(createUnframer(), framed.subarray(0, cut));
        expect({ cut, code: codeOf(read.error) }).toEqual({ cut, code: 'truncated' });
        expect({ cut, kept: read.output.byteLength }).toEqual({ cut, kept: chunksBefore(record) });
      }
    }
  });

  it('reports data after the last record as an extended stream', async () => {
    for (const size of [0, 5, PLAIN_CHUNK]) {
      const framed = await frame(pattern(size));
      for (const extra of [new Uint8Array(1), new Uint8Array(FRAMED_RECORD + 1), framed]) {
        const read = await run(createUnframer(), concat(framed, extra));
        expect(codeOf(read.error)).toBe('tampered');
        expect((read.error as Error).message).toMatch(/the stream was extended/);
        expectSameBytes(read.output, pattern(size));
      }
    }
  });

  it('refuses malformed record lengths', async () => {
    const header = framedHeader();
    const prefix = (word: number) => {
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setUint32(0, word);
      return bytes;
    };
    const whole = concat(prefix(PLAIN_CHUNK), pattern(PLAIN_CHUNK));
    for (const [name, body] of [
      ['a short record that is not the last', concat(prefix(5), pattern(5), prefix(0x8000_0001), pattern(1))],
      ['a long record', concat(prefix(PLAIN_CHUNK + 1), pattern(PLAIN_CHUNK + 1))],
      ['a long last record', concat(prefix(0x8000_0000 + PLAIN_CHUNK + 1), pattern(PLAIN_CHUNK + 1))],
      ['an empty last record after others', concat(whole, prefix(0x8000_0000))],
      ['an empty record that is not the last', concat(prefix(0), prefix(0x8000_0001), pattern(1))],
      ['a record of 2^31 - 1 bytes', concat(prefix(0x7fff_ffff), pattern(10))],
    ] as const) {
      const read = await run(createUnframer(), concat(header, body), [11, 100]);
      expect({ name, code: codeOf(read.error) }).toEqual({ name, code: 'tampered' });
    }
  });

  it('refuses a sealed stream, a foreign one and another version', async () => {
    const sealed = await run((await createSealer({ kind: 'key', key: pattern(32) })).sealFrom(0), pattern(5));
    const encrypted = await run(createUnframer(), sealed.output);
    expect(codeOf(encrypted.error)).toBe('not-this-format');
    expect((encrypted.error as Error).message).toMatch(/encrypted: a passphrase or key is needed/);
    const foreign = await run(createUnframer(), new TextEncoder().encode('plain old bytes'));
    expect(codeOf(foreign.error)).toBe('not-this-format');
    const v2 = framedHeader();
    v2[8] = 2;
    expect(codeOf((await run(createUnframer(), concat(v2, new Uint8Array([0x80, 0, 0, 0])))).error)).toBe(
      'unsupported',
    );
  });
});

describe('framed resume', () => {
  it('re-frames from any record the very bytes of the whole stream, which read from there', async () => {
    for (const size of [3 * PLAIN_CHUNK + 5, 2 * PLAIN_CHUNK]) {
      const plaintext = pattern(size, 9);
      const whole = await frame(plaintext);
      const records = Math.ceil(size / PLAIN_CHUNK);
      for (let k = 0; k <= (size % PLAIN_CHUNK === 0 ? records : records - 1); k++) {
        const tail = whole.subarray(framedOffsetOfRecord(k));
        expectSameBytes(await frame(plaintext, [3, PLAIN_CHUNK], k), k === 0 ? whole : tail, `from ${k}`);
        if (k === records) continue;
        const indices: number[] = [];
        const read = await run(unframerFrom(k, { onRecord: (i) => indices.push(i) }), tail, [1]);
        expect(read.error).toBeUndefined();
        expectSameBytes(read.output, plaintext.subarray(chunksBefore(k)));
        expect([indices[0], indices.at(-1)]).toEqual([k, records - 1]);
      }
    }
  });

  it('completes a receiver cut anywhere, from the record after the last one it wrote', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK + 77);
    const whole = await frame(plaintext);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: whole.byteLength - 1 }), async (cut) => {
        const first = await run(createUnframer(), whole.subarray(0, cut));
        expect(codeOf(first.error)).toBe('truncated');
        const k = chunkAtPlainOffset(first.output.byteLength);
        expect(k).toBeLessThanOrEqual(recordAtFramedOffset(cut));
        const rest = await run(unframerFrom(k), whole.subarray(framedOffsetOfRecord(k)));
        expect(rest.error).toBeUndefined();
        expectSameBytes(concat(first.output, rest.output), plaintext);
      }),
      { numRuns: 40 },
    );
    expect(framedOffsetOfRecord(0)).toBe(FRAMED_HEADER_BYTES);
  });
});
