// The CLI's node:crypto chunk cipher must seal exactly what Web Crypto seals, and open what it seals: a
// stream sealed on a host running the CLI opens in a browser, and the other way round.
import { describe, expect, it } from 'vitest';
import { nodeChunkCipher } from '../src/cli/node-chunk-cipher.js';
import {
  createOpener,
  createSealer,
  type KeySource,
  PLAIN_CHUNK,
  sealerFromHeader,
} from '../src/client/format/index.js';
import { pattern, run } from './helpers/format-streams.js';

const KEY: KeySource = { kind: 'key', key: pattern(32, 11) };
const SIZES = [0, 5, PLAIN_CHUNK, 2 * PLAIN_CHUNK + 7];

describe('node:crypto chunk cipher', () => {
  it.each(SIZES)('seals %i bytes exactly as Web Crypto does, and each opens the other', async (size) => {
    const plaintext = pattern(size, 3);
    const web = await createSealer(KEY);
    const node = await sealerFromHeader(web.header, KEY, { cipher: nodeChunkCipher });
    const byWeb = await run(web.sealFrom(0), plaintext, [1000, 70_000]);
    const byNode = await run(node.sealFrom(0), plaintext, [1000, 70_000]);
    expect(byNode.error).toBeUndefined();
    expect(Buffer.from(byNode.output).equals(Buffer.from(byWeb.output))).toBe(true);
    const openedByNode = await run(createOpener(KEY, { cipher: nodeChunkCipher }), byWeb.output);
    const openedByWeb = await run(createOpener(KEY), byNode.output);
    expect(openedByNode.error).toBeUndefined();
    expect(Buffer.from(openedByNode.output).equals(Buffer.from(plaintext))).toBe(true);
    expect(Buffer.from(openedByWeb.output).equals(Buffer.from(plaintext))).toBe(true);
  });

  it('refuses a flipped byte, as Web Crypto does', async () => {
    const plaintext = pattern(3 * PLAIN_CHUNK, 4);
    const sealer = await createSealer(KEY, { cipher: nodeChunkCipher });
    const sealed = (await run(sealer.sealFrom(0), plaintext)).output;
    sealed[150_000] = (sealed[150_000] ?? 0) ^ 0x01;
    const opened = await run(createOpener(KEY, { cipher: nodeChunkCipher }), sealed);
    expect((opened.error as { code?: string }).code).toBe('tampered');
    expect(opened.output.byteLength).toBe(2 * PLAIN_CHUNK);
  });
});
