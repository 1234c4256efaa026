import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { removeStaleBundles } from '../src/cli/local-workerd.js';

describe('removeStaleBundles', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("removes the bundles of dead processes (killed before they could) and keeps the living's and others'", () => {
    dir = mkdtempSync(join(tmpdir(), 'stale-bundles-'));
    // A process that has exited: its pid names no one now.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    for (const name of [
      `edgepipe-worker-${deadPid}-aB3xYz`,
      `edgepipe-worker-${process.pid}-cD4eFg`,
      'other',
    ]) {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'index.js'), '');
    }
    expect(removeStaleBundles(dir)).toEqual([`edgepipe-worker-${deadPid}-aB3xYz`]);
    expect(readdirSync(dir).sort()).toEqual([`edgepipe-worker-${process.pid}-cD4eFg`, 'other'].sort());
    expect(existsSync(join(dir, 'other', 'index.js'))).toBe(true);
  });
});
