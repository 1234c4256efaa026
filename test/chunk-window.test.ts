import { describe, expect, it } from 'vitest';
import { ReceiversGoneError, SenderAbortedError } from '../src/broker/errors.js';
import { ChunkWindow } from '../src/broker/memory/chunk-window.js';
import { isPending } from './broker-contract.js';

describe('ChunkWindow', () => {
  it('bounds the number of chunks as well as the bytes', async () => {
    const window = new ChunkWindow([1], { windowBytes: 1 << 20, maxChunks: 8 });
    const tiny = new Uint8Array(1);
    for (let i = 0; i < 8; i++) await window.write(tiny);
    const blocked = window.write(tiny);
    expect(await isPending(blocked)).toBe(true);
    // A writer that had to wait goes on once half the chunks are read, not at the first one.
    for (let i = 0; i < 4; i++) await window.read(1);
    expect(await isPending(blocked)).toBe(true);
    await window.read(1);
    await blocked;
  });

  it('lets a writer that had to wait go on once half the window is free', async () => {
    const window = new ChunkWindow([1], { windowBytes: 8 });
    await window.write(new Uint8Array(4));
    await window.write(new Uint8Array(4));
    const blocked = window.write(new Uint8Array(4));
    expect(await isPending(blocked)).toBe(true);
    await window.read(1);
    expect(window.heldBytes).toBe(8);
    expect(await isPending(blocked)).toBe(true);
    await window.read(1);
    expect(window.heldBytes).toBe(4);
    await blocked;
  });

  it('drops a chunk once the slowest reader has it, and shares it between readers', async () => {
    const window = new ChunkWindow([1, 2], { windowBytes: 10 });
    const chunk = new Uint8Array(6);
    await window.write(chunk);
    expect(window.heldBytes).toBe(6);
    expect(await window.read(1)).toBe(chunk);
    expect(window.heldBytes).toBe(6);
    expect(await window.read(2)).toBe(chunk);
    expect(window.heldBytes).toBe(0);
  });

  it("readers of different paces each get every chunk in order, and it holds the slowest one's backlog", async () => {
    const delivered: number[] = [];
    const window = new ChunkWindow([1, 2], {
      windowBytes: 1 << 30,
      onDelivered: (ms) => delivered.push(ms),
    });
    const got = new Map<number, number[]>([
      [1, []],
      [2, []],
    ]);
    const sizes: number[] = [];
    // Reader 1 takes a chunk per chunk written, reader 2 three at a time every fourth write: the chunks held
    // for reader 2 move along the array, which is compacted on the way.
    for (let i = 0; i < 200; i++) {
      const size = 1 + ((i * 37) % 50);
      sizes.push(size);
      await window.write(new Uint8Array(size).fill(i % 256));
      got.get(1)!.push((await window.read(1))![0]!);
      if (i % 4 === 3) for (let k = 0; k < 3; k++) got.get(2)!.push((await window.read(2))![0]!);
      const backlog = sizes.slice(got.get(2)!.length).reduce((a, b) => a + b, 0);
      expect(window.heldBytes).toBe(backlog);
    }
    const ended = window.end();
    expect(await window.read(1)).toBeNull();
    for (;;) {
      const chunk = await window.read(2);
      if (!chunk) break;
      got.get(2)!.push(chunk[0]!);
    }
    await ended;
    const expected = sizes.map((_, i) => i % 256);
    expect(got.get(1)).toEqual(expected);
    expect(got.get(2)).toEqual(expected);
    expect(window.heldBytes).toBe(0);
    expect(delivered).toHaveLength(400);
  });

  it('end resolves when readers drain; a reader that finished is not an abort', async () => {
    const window = new ChunkWindow([1], { windowBytes: 10 });
    await window.write(new Uint8Array(2));
    const ended = window.end();
    expect(await isPending(ended)).toBe(true);
    await window.read(1);
    expect(await window.read(1)).toBeNull();
    await ended;
    expect(window.removeReader(1)).toBe(false);
  });

  it('end with every reader gone rejects: nobody got the data', async () => {
    const window = new ChunkWindow([1], { windowBytes: 10 });
    await window.write(new Uint8Array(2));
    const ended = window.end();
    expect(window.removeReader(1)).toBe(true);
    await expect(ended).rejects.toBeInstanceOf(ReceiversGoneError);
  });

  it('fail rejects a waiting reader and a waiting writer', async () => {
    const window = new ChunkWindow([1, 2], { windowBytes: 4 });
    const blockedWriter = window.write(new Uint8Array(8));
    expect(await isPending(blockedWriter)).toBe(true);
    expect(await window.read(1)).toHaveLength(8);
    const waitingReader = window.read(1);
    expect(await isPending(waitingReader)).toBe(true);
    window.fail(new SenderAbortedError('boom'));
    await expect(blockedWriter).rejects.toThrow('boom');
    await expect(waitingReader).rejects.toThrow('boom');
    await expect(window.read(2)).rejects.toBeInstanceOf(SenderAbortedError);
  });
});
