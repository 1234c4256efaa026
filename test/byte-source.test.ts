import { describe, expect, it } from 'vitest';
import { sourceOfStream } from '../src/byte-source.js';

describe('sourceOfStream', () => {
  it('joins small pieces with those already queued, up to 64 KiB, and never waits for more', async () => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    controller.enqueue(new Uint8Array(65_536).fill(1));
    controller.enqueue(new Uint8Array(16).fill(2));
    controller.enqueue(new Uint8Array(16).fill(3));
    controller.enqueue(new Uint8Array(65_536).fill(4));
    controller.enqueue(new Uint8Array(10).fill(5));
    const source = sourceOfStream(stream);
    expect((await source.read())!.byteLength).toBe(65_536);
    const joined = (await source.read())!;
    expect(joined.byteLength).toBe(65_568);
    expect([joined[0], joined[16], joined[32], joined[65_567]]).toEqual([2, 3, 4, 4]);
    // Nothing queued behind the last small piece: it comes alone, at once.
    expect(Array.from((await source.read())!)).toEqual(new Array(10).fill(5));
    const pending = source.read();
    controller.enqueue(new Uint8Array([6]));
    controller.close();
    expect(Array.from((await pending)!)).toEqual([6]);
    expect(await source.read()).toBeNull();
  });

  it('passes an error after the pieces before it', async () => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    controller.enqueue(new Uint8Array([1, 2]));
    const source = sourceOfStream(stream);
    const first = source.read();
    await Promise.resolve();
    controller.error(new Error('upload cut'));
    expect(Array.from((await first)!)).toEqual([1, 2]);
    await expect(source.read()).rejects.toThrow('upload cut');
  });
});
