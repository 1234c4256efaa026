import { describe, expect, it } from 'vitest';
import { type ByteSource, sourceOfStream } from '../src/byte-source.js';
import { MultipartError, multipartBoundaryOf, readFirstPart } from '../src/routes/multipart.js';

const enc = new TextEncoder();

/** A stream of `bytes` cut at the given offsets. */
function streamOf(bytes: Uint8Array, cuts: number[]): ByteSource {
  const points = [0, ...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length];
  let i = 0;
  return sourceOfStream(
    new ReadableStream({
      pull(controller) {
        if (i >= points.length - 1) return controller.close();
        controller.enqueue(bytes.slice(points[i], points[i + 1]));
        i++;
      },
    }),
  );
}

async function collect(source: ByteSource): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let chunk = await source.read(); chunk !== null; chunk = await source.read()) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function form(boundary: string, parts: Array<{ head: string; body: Uint8Array }>, preamble = ''): Uint8Array {
  const pieces: Uint8Array[] = [enc.encode(preamble)];
  for (const part of parts) {
    pieces.push(enc.encode(`--${boundary}\r\n${part.head}\r\n\r\n`), part.body, enc.encode('\r\n'));
  }
  pieces.push(enc.encode(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

describe('multipart first part', () => {
  it('finds the boundary in the Content-Type, quoted or not', () => {
    expect(multipartBoundaryOf('multipart/form-data; boundary=abc')).toBe('abc');
    expect(multipartBoundaryOf('Multipart/Form-Data; charset=utf-8; boundary="a b;c"')).toBe('a b;c');
    expect(multipartBoundaryOf('text/plain')).toBeUndefined();
    expect(multipartBoundaryOf(null)).toBeUndefined();
    expect(() => multipartBoundaryOf('multipart/form-data')).toThrow(MultipartError);
  });

  it('streams the first part byte-exact under every way of cutting the body', async () => {
    const boundary = '----edgepipe7MA4YWxkTrZu0gW';
    // Bytes that look like the delimiter's start, CRLFs and every byte value.
    const payload = Buffer.concat([
      enc.encode('\r\n--'),
      Uint8Array.from({ length: 256 }, (_, i) => i),
      enc.encode(`\r\n--${boundary.slice(0, -1)}x\r\n`),
      new Uint8Array(3000).fill(13),
    ]);
    const body = form(boundary, [
      {
        head: 'Content-Disposition: form-data; name="f"; filename="a.bin"\r\nContent-Type: application/x-test',
        body: payload,
      },
      { head: 'Content-Disposition: form-data; name="second"', body: enc.encode('ignored') },
    ]);
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const splits: number[][] = [[], Array.from({ length: body.length }, (_, i) => i)];
    for (let i = 0; i < 60; i++)
      splits.push(
        Array.from({ length: 1 + Math.floor(random() * 20) }, () => Math.floor(random() * body.length)),
      );
    for (const cuts of splits) {
      const part = await readFirstPart(streamOf(body, cuts), boundary);
      expect(part.headers.get('content-type')).toBe('application/x-test');
      expect(part.headers.get('content-disposition')).toContain('filename="a.bin"');
      expect(Buffer.from(await collect(part.body)).equals(payload)).toBe(true);
    }
  });

  it('skips a preamble and handles an empty part', async () => {
    const body = form(
      'b',
      [{ head: 'Content-Disposition: form-data; name="t"', body: new Uint8Array(0) }],
      'preamble text\r\n',
    );
    const part = await readFirstPart(streamOf(body, [3, 17]), 'b');
    expect((await collect(part.body)).length).toBe(0);
  });

  it('refuses bodies that are not the multipart they claim', async () => {
    await expect(readFirstPart(streamOf(enc.encode('no boundary here'), []), 'b')).rejects.toThrow(
      MultipartError,
    );
    await expect(readFirstPart(streamOf(enc.encode('--b--\r\n'), []), 'b')).rejects.toThrow('no part');
    await expect(
      readFirstPart(streamOf(enc.encode('--b\r\nbad header line\r\n\r\nx'), []), 'b'),
    ).rejects.toThrow(MultipartError);
    await expect(readFirstPart(streamOf(new Uint8Array(40_000).fill(65), []), 'b')).rejects.toThrow('16 KiB');
  });

  it('errors the part stream when the body ends before the closing delimiter', async () => {
    const part = await readFirstPart(streamOf(enc.encode('--b\r\nX-A: 1\r\n\r\npartial data'), []), 'b');
    await expect(collect(part.body)).rejects.toThrow('closing boundary');
  });
});
