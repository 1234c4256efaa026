import { appendFileSync, mkdtempSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { followFile } from '../src/cli/follow-file.js';

/** Collects what `followFile` yields into a string the test polls. */
function follow(path: string) {
  const controller = new AbortController();
  let text = '';
  const done = (async () => {
    for await (const piece of followFile(path, { pollMs: 10, chunkBytes: 7, signal: controller.signal })) {
      text += new TextDecoder().decode(piece.bytes);
    }
  })().catch((error: unknown) => {
    if (!controller.signal.aborted) throw error;
  });
  const stop = () => {
    controller.abort();
    return done;
  };
  return { text: () => text, stop };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(check()).toBe(true);
}

describe('followFile (tail -n 0 -F)', () => {
  it('starts at the end, reads appends in bounded pieces, follows rotation and truncation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgepipe-follow-'));
    const path = join(dir, 'log');
    writeFileSync(path, 'old line\n');
    const f = follow(path);
    await new Promise((resolve) => setTimeout(resolve, 50));
    appendFileSync(path, 'one\ntwo and more\n');
    await until(() => f.text() === 'one\ntwo and more\n');
    // Rotated: the old file's tail is read, then the new file from its start.
    appendFileSync(path, 'last of old\n');
    renameSync(path, join(dir, 'log.1'));
    writeFileSync(path, 'first of new\n');
    await until(() => f.text().endsWith('last of old\nfirst of new\n'));
    truncateSync(path, 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    appendFileSync(path, 'after truncation\n');
    await until(() => f.text().endsWith('first of new\nafter truncation\n'));
    await f.stop();
  });

  it('waits for a file that does not exist yet, then reads it whole', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'edgepipe-follow-')), 'later');
    const f = follow(path);
    await new Promise((resolve) => setTimeout(resolve, 50));
    writeFileSync(path, 'born\n');
    await until(() => f.text() === 'born\n');
    await f.stop();
  });
});
