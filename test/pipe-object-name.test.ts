import { describe, expect, it } from 'vitest';
import { pipeObjectName } from '../src/adapter/cloudflare-workers/pipe-object-name.js';

describe('pipeObjectName (broker.objectShards)', () => {
  it('names the object after the path without shards', () => {
    expect(pipeObjectName('/some/path', 0)).toBe('/some/path');
  });

  it('gives one path one shard, the same in every isolate and deploy', () => {
    // Fixed values: a change of hash would split the parties of a pipe across a deploy.
    // FNV-1a's published 32-bit values: '' is the offset basis 0x811c9dc5, 'a' is 0xe40c292c.
    expect(pipeObjectName('', 65_536)).toBe(`shard:${0x811c9dc5 % 65_536}/65536`);
    expect(pipeObjectName('a', 65_536)).toBe(`shard:${0xe40c292c % 65_536}/65536`);
    expect(pipeObjectName('/some/path', 64)).toBe('shard:20/64');
    expect(pipeObjectName('/a', 1)).toBe('shard:0/1');
  });

  it('spreads paths evenly over the shards', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 64_000; i++) {
      const name = pipeObjectName(`/pipe/${i.toString(36)}`, 64);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    expect(counts.size).toBe(64);
    for (const count of counts.values()) expect(count).toBeGreaterThan(800);
    for (const count of counts.values()) expect(count).toBeLessThan(1200);
  });
});
