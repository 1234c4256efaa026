import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReportSpool, type SpoolOptions } from '../src/cli/report-spool.js';

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

function open(dir: string, over: Partial<SpoolOptions> = {}) {
  const warnings: string[] = [];
  const spool = ReportSpool.open({
    dir,
    maxBytes: 1024 * 1024,
    newDeviceId: () => 'dev1',
    warn: (text) => warnings.push(text),
    pid: process.pid,
    ...over,
  });
  return { spool, warnings };
}

const fresh = () => mkdtempSync(join(tmpdir(), 'edgepipe-spool-'));

describe('report spool', () => {
  it('writes each batch to a file of its own before it is sent and removes it after', async () => {
    const dir = fresh();
    const { spool } = open(dir);
    const a = await spool.put(bytes(10), 2);
    expect(a.key).toBe('dev1:0');
    const files = readdirSync(dir).filter((f) => f.endsWith('.batch'));
    expect(files).toEqual(['b-0000000000000000.batch']);
    expect(readFileSync(join(dir, files[0]!), 'utf8')).toContain('"key":"dev1:0"');
    expect(await spool.next()).toMatchObject({ key: 'dev1:0', records: 2 });
    await spool.remove(a);
    expect(readdirSync(dir).filter((f) => f.endsWith('.batch'))).toEqual([]);
    spool.release();
  });

  it('drains leftovers of a killed run first, in order, and never reuses a key', async () => {
    const dir = fresh();
    const first = open(dir).spool;
    for (let i = 0; i < 3; i++) await first.put(bytes(5, i), 1);
    // Killed: no release, no removal. A half-written file lies about too.
    writeFileSync(join(dir, 'b-0000000000000009.batch.tmp'), 'half');
    const { spool } = open(dir);
    expect(spool.waiting).toBe(3);
    const seen: string[] = [];
    spool.close();
    for (let batch = await spool.next(); batch; batch = await spool.next()) {
      seen.push(batch.key);
      expect(batch.body[0]).toBe(seen.length - 1);
      await spool.remove(batch);
    }
    expect(seen).toEqual(['dev1:0', 'dev1:1', 'dev1:2']);
    expect(readdirSync(dir).some((f) => f.endsWith('.tmp'))).toBe(false);
    const third = open(dir, { newDeviceId: () => 'other' }).spool;
    const next = await third.put(bytes(1), 1);
    // The device id persists; the sequence continues past every one the earlier runs could have used.
    expect(next.key.startsWith('dev1:')).toBe(true);
    expect(Number(next.key.split(':')[1])).toBeGreaterThan(2);
  });

  it('refuses a spool a live reporter holds, and takes over a dead one', () => {
    const dir = fresh();
    open(dir, { pid: process.pid });
    expect(() => open(dir, { pid: process.pid + 1 })).toThrow(/in use by another reporter/);
    writeFileSync(join(dir, 'lock'), '999999999\n');
    expect(() => open(dir, { pid: process.pid + 1 })).not.toThrow();
  });

  it('drops the oldest batch not in flight when full, with a warning and a counter that persists', async () => {
    const dir = fresh();
    const { spool, warnings } = open(dir, { maxBytes: 300 });
    const a = await spool.put(bytes(100), 1);
    expect(await spool.next()).toMatchObject({ key: a.key }); // in flight: never dropped under the sender
    await spool.put(bytes(100), 1);
    await spool.put(bytes(100), 1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/spool full .* dropped batch dev1:1 .* 1 dropped so far/);
    expect(spool.dropped).toBe(1);
    await spool.remove(a);
    const keys: string[] = [];
    spool.close();
    for (let b = await spool.next(); b; b = await spool.next()) {
      keys.push(b.key);
      await spool.remove(b);
    }
    expect(keys).toEqual(['dev1:2']);
    spool.release();
    await open(dir, { maxBytes: 300 }).spool.put(bytes(1), 1);
    expect(JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')).dropped).toBe(1);
  });

  it('keeps the input mark of the last batch, from a leftover batch newer than the state too', async () => {
    const dir = fresh();
    const { spool } = open(dir);
    const a = await spool.put(bytes(3), 1, { inode: 7, offset: 10 });
    await spool.remove(a);
    await spool.put(bytes(3), 1, { inode: 7, offset: 20 });
    expect(open(dir).spool.mark).toEqual({ inode: 7, offset: 20 });
    // As if killed after writing a batch but before the state: the batch's mark is newer.
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
    writeFileSync(
      join(dir, 'state.json'),
      JSON.stringify({ ...state, mark: { inode: 7, offset: 10 }, markSeq: 0 }),
    );
    expect(open(dir).spool.mark).toEqual({ inode: 7, offset: 20 });
    // A sent (removed) batch does not pull the mark back to an older leftover.
    writeFileSync(
      join(dir, 'state.json'),
      JSON.stringify({ ...state, mark: { inode: 7, offset: 30 }, markSeq: 5 }),
    );
    expect(open(dir).spool.mark).toEqual({ inode: 7, offset: 30 });
  });
});
