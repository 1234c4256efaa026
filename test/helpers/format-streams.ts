// Drives the stream formats of src/client/format in tests: input cut into pieces at chosen offsets, output
// collected with the error (if any) that ended it.
import { expect } from 'vitest';
import { PLAIN_CHUNK } from '../../src/client/format/index.js';

/** The test plaintext: byte i is (i + seed) mod 251, easy to regenerate anywhere (docs/encryption-vectors.json). */
export function pattern(length: number, seed = 0): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i + seed) % 251;
  return bytes;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** `bytes` cut at the given offsets (any order, out-of-range ones ignored); no empty pieces. */
export function piecesOf(bytes: Uint8Array, cuts: readonly number[] = []): Uint8Array[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.byteLength))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const to of [...points, bytes.byteLength]) {
    if (to > from) pieces.push(bytes.slice(from, to));
    from = to;
  }
  return pieces;
}

export interface Run {
  /** Everything the transform delivered, joined. */
  readonly output: Uint8Array;
  /** The delivered pieces as they came. */
  readonly pieces: Uint8Array[];
  /** What ended the output with an error, or undefined for a clean end. */
  readonly error: unknown;
}

/** Feeds `input` (cut at `cuts`) through `transform` and reads all of its output. */
export async function run(
  transform: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  input: Uint8Array,
  cuts: readonly number[] = [],
): Promise<Run> {
  const queue = piecesOf(input, cuts);
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
  return readAll(source.pipeThrough(transform));
}

/** Reads a stream to its end or its error. */
export async function readAll(readable: ReadableStream<Uint8Array>): Promise<Run> {
  const reader = readable.getReader();
  const pieces: Uint8Array[] = [];
  let error: unknown;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pieces.push(value);
    }
  } catch (e) {
    error = e;
  }
  return { output: concat(...pieces), pieces, error };
}

/** Plaintext bytes of the whole chunks before chunk `index`. */
export const chunksBefore = (index: number) => index * PLAIN_CHUNK;

/** The index of the first byte where `a` and `b` differ (or where the shorter ends), −1 if they are equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.byteLength === b.byteLength ? -1 : n;
}

/** Asserts equal bytes, fast on megabytes (vitest's deep equality walks them one by one) and with a useful diff. */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array, label = ''): void {
  expect({ label, length: actual.byteLength, firstDifference: firstDifference(actual, expected) }).toEqual({
    label,
    length: expected.byteLength,
    firstDifference: -1,
  });
}
