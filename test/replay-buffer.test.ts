import { describe, expect, it } from 'vitest';
import { ReplayBuffer } from '../src/client/plain-source.js';

/** A one-shot input of `count` chunks, each filled with its own index. */
function numberedInput(count: number, size = 16): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull: async (controller) => {
        // A chunk arrives later than it is asked for, as from a socket.
        await new Promise((resolve) => setTimeout(resolve, 1));
        if (next === count) controller.close();
        else controller.enqueue(new Uint8Array(size).fill(next++));
      },
    },
    { highWaterMark: 0 },
  );
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.push(...value);
  }
}

describe('ReplayBuffer', () => {
  it('two streams read at once (an abandoned attempt still pulling, and its successor) both get every byte in order', async () => {
    const buffer = new ReplayBuffer(numberedInput(50), 1 << 20);
    const expected = Array.from({ length: 50 }, (_, i) => new Array<number>(16).fill(i)).flat();
    const [first, second] = await Promise.all([readAll(buffer.from(0)), readAll(buffer.from(0))]);
    expect(first).toEqual(expected);
    expect(second).toEqual(expected);
  });

  it('keeps the newest chunk even below its capacity, so a reader at it still gets it', async () => {
    const buffer = new ReplayBuffer(numberedInput(3, 64), 1);
    expect((await readAll(buffer.from(0))).length).toBe(192);
    expect(buffer.oldestOffset).toBe(128);
  });

  it('refuses an offset it no longer holds', async () => {
    const buffer = new ReplayBuffer(numberedInput(4, 64), 64);
    await readAll(buffer.from(0));
    expect(() => buffer.from(0)).toThrow(/replay buffer only holds bytes from 192/);
  });
});
