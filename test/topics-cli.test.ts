// `edgepipe report` and `edgepipe consume` against a real server process on the memory broker. Needs
// `npm run build` (the commands run from dist/).
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRecords, encodeRecords } from '../src/client/topics/record-framing.js';
import { type ServerProcess, spawnServer } from './helpers/processes.js';
import { freePort } from './helpers/redis-server.js';
import { configFile, edgepipe, spawnEdgepipe, until } from './helpers/topic-cli.js';

let server: ServerProcess;
const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag} ${i}`);
const tmp = () => mkdtempSync(join(tmpdir(), 'edgepipe-topics-'));

beforeAll(async () => {
  server = await spawnServer(['--config', configFile({ topics: { claimAfterMs: 500 } })]);
});

afterAll(() => server?.kill());

describe('report → consume on the memory broker', () => {
  it('appends lines in batches and a consumer group reads each once, in order', async () => {
    const input = `${lines(300, 'r').join('\n')}\n`;
    const sent = await edgepipe(
      ['report', 'e2e/lines', '--server', server.url, '--batch-bytes', '1KiB', '--batch-ms', '50'],
      {
        input,
      },
    );
    expect(sent.stderr).toMatch(/reported 300 records in \d+ batches/);
    expect(sent.code).toBe(0);
    const got = await edgepipe([
      'consume',
      'e2e/lines',
      '--server',
      server.url,
      '--group',
      'g',
      '--once',
      '--wait',
      '300ms',
      '--count',
      '70',
    ]);
    expect(got.code).toBe(0);
    expect(got.stdout.toString()).toBe(input);
    // Acknowledged: the group has nothing more; another group starts from the earliest again.
    const again = await edgepipe([
      'consume',
      'e2e/lines',
      '--server',
      server.url,
      '--group',
      'g',
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(again.stdout.toString()).toBe('');
    const other = await edgepipe([
      'consume',
      'e2e/*',
      '--server',
      server.url,
      '--group',
      'h',
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(other.stdout.toString()).toBe(input);
  });

  it('carries binary records (--binary) length-prefixed both ways, empty and non-UTF-8 ones included', async () => {
    const records = [new Uint8Array([0xff, 0x00, 0x0a]), new Uint8Array(0), new TextEncoder().encode('text')];
    const sent = await edgepipe(['report', 'e2e/binary', '--server', server.url, '--binary', '--no-gzip'], {
      input: encodeRecords(records),
    });
    expect(sent.code).toBe(0);
    const got = await edgepipe([
      'consume',
      'e2e/binary',
      '--server',
      server.url,
      '--group',
      'g',
      '--binary',
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(decodeRecords(new Uint8Array(got.stdout))).toEqual(
      records.filter((r) => r.byteLength > 0 || true),
    );
  });

  it('--exec acknowledges a batch only when the command exits 0', async () => {
    const input = `${lines(20, 'x').join('\n')}\n`;
    expect((await edgepipe(['report', 'e2e/exec', '--server', server.url], { input })).code).toBe(0);
    const dir = tmp();
    const failing = await edgepipe([
      'consume',
      'e2e/exec',
      '--server',
      server.url,
      '--group',
      'g',
      '--consumer',
      'c1',
      '--exec',
      `cat >> ${join(dir, 'failed')}; exit 3`,
      '--retry-base',
      '50ms',
      '--retry-for',
      '1s',
      '-q',
    ]);
    expect(failing.code).toBe(4); // gave up: the command kept failing
    expect(readFileSync(join(dir, 'failed'), 'utf8').startsWith(input)).toBe(true);
    const ok = await edgepipe([
      'consume',
      'e2e/exec',
      '--server',
      server.url,
      '--group',
      'g',
      '--consumer',
      'c1',
      '--exec',
      `cat >> ${join(dir, 'ok')}`,
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(ok.code).toBe(0);
    expect(readFileSync(join(dir, 'ok'), 'utf8')).toBe(input);
    const after = await edgepipe([
      'consume',
      'e2e/exec',
      '--server',
      server.url,
      '--group',
      'g',
      '--consumer',
      'c1',
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(after.stdout.toString()).toBe('');
  });

  it('seals each batch as one record (--key-file); a consumer with the key opens it, one without sees it sealed', async () => {
    const keyFile = join(tmp(), 'key');
    writeFileSync(keyFile, `${'ab'.repeat(32)}\n`);
    const input = `${lines(50, 'secret').join('\n')}\n`;
    const sent = await edgepipe(
      ['report', 'e2e/sealed', '--server', server.url, '--key-file', keyFile, '--batch-bytes', '300'],
      { input },
    );
    expect(sent.code).toBe(0);
    const opened = await edgepipe([
      'consume',
      'e2e/sealed',
      '--server',
      server.url,
      '--group',
      'g',
      '--key-file',
      keyFile,
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(opened.code).toBe(0);
    expect(opened.stdout.toString()).toBe(input);
    const blind = await edgepipe([
      'consume',
      'e2e/sealed',
      '--server',
      server.url,
      '--group',
      'blind',
      '--binary',
      '--once',
      '--wait',
      '300ms',
    ]);
    const records = decodeRecords(new Uint8Array(blind.stdout));
    expect(records.length).toBeGreaterThan(1);
    expect(records.length).toBeLessThan(50);
    for (const record of records) expect(new TextDecoder().decode(record.subarray(0, 8))).toBe('EPSEALED');
    expect(blind.stdout.toString('latin1')).not.toContain('secret');
    const wrong = join(tmp(), 'wrong');
    writeFileSync(wrong, `${'cd'.repeat(32)}\n`);
    const refused = await edgepipe([
      'consume',
      'e2e/sealed',
      '--server',
      server.url,
      '--group',
      'w',
      '--key-file',
      wrong,
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(refused.code).toBe(5);
  });
});

describe('the offline spool', () => {
  it('keeps batches on disk while the broker is away, and a restarted reporter drains them once it is back', async () => {
    const port = await freePort();
    const spool = tmp();
    const url = `http://127.0.0.1:${port}`;
    const input = `${lines(100, 'offline').join('\n')}\n`;
    const first = spawnEdgepipe([
      'report',
      'e2e/spooled',
      '--server',
      url,
      '--spool',
      spool,
      '--batch-bytes',
      '256',
      '--batch-ms',
      '20',
      '--retry-base',
      '50ms',
      '--retry-cap',
      '200ms',
      '-q',
    ]);
    first.child.stdin!.end(input);
    await until(
      () => readdirSync(spool).filter((f) => f.endsWith('.batch')).length >= 5,
      10_000,
      'batches in the spool',
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    first.child.kill('SIGKILL');
    await first.exited();
    const spooled = readdirSync(spool).filter((f) => f.endsWith('.batch')).length;
    expect(spooled).toBeGreaterThanOrEqual(5);
    const late = await spawnServer(['--config', configFile({}), '--port', String(port)]);
    try {
      const second = await edgepipe(['report', 'e2e/spooled', '--server', url, '--spool', spool], {
        input: '',
      });
      expect(second.code).toBe(0);
      expect(second.stderr).toMatch(/batches left in the spool go first/);
      expect(readdirSync(spool).filter((f) => f.endsWith('.batch'))).toEqual([]);
      const got = await edgepipe([
        'consume',
        'e2e/spooled',
        '--server',
        url,
        '--group',
        'g',
        '--once',
        '--wait',
        '300ms',
      ]);
      expect(got.stdout.toString()).toBe(input);
    } finally {
      late.kill();
    }
  });
});

describe('a stopped reporter', () => {
  it('queues what it had read into its spool on SIGTERM (exit 143), and the next run sends it', async () => {
    const spool = tmp();
    const input = `${lines(30, 'term').join('\n')}\n`;
    const first = spawnEdgepipe([
      'report',
      'e2e/term',
      '--server',
      server.url,
      '--spool',
      spool,
      '--batch-ms',
      '60s',
    ]);
    first.child.stdin!.write(input);
    // The batch stays open for a minute: only the SIGTERM closes it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(143);
    expect(readdirSync(spool).filter((f) => f.endsWith('.batch'))).toHaveLength(1);
    const second = await edgepipe(['report', 'e2e/term', '--server', server.url, '--spool', spool], {
      input: '',
    });
    expect(second.code).toBe(0);
    const got = await edgepipe([
      'consume',
      'e2e/term',
      '--server',
      server.url,
      '--group',
      'g',
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(got.stdout.toString()).toBe(input);
  });
});

describe('report --follow with a spool', () => {
  it('reads a log from its end, and a restarted reporter reads on where the last one stopped', async () => {
    const dir = tmp();
    const log = join(dir, 'app.log');
    writeFileSync(log, 'before the reporter\n');
    const args = [
      'report',
      'e2e/follow',
      '--server',
      server.url,
      '--follow',
      log,
      '--spool',
      join(dir, 'spool'),
      '--batch-ms',
      '50',
    ];
    const stored = async () =>
      Number(
        (await fetch(`${server.url}/_/topics/e2e/follow`, { method: 'HEAD' })).headers.get('Topic-Records'),
      );
    const waitFor = async (n: number) => {
      for (let i = 0; i < 200 && (await stored()) < n; i++)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await stored()).toBe(n);
    };
    const first = spawnEdgepipe(args);
    await until(() => readdirSync(join(dir)).includes('spool'), 10_000, 'the reporter to start');
    await new Promise((resolve) => setTimeout(resolve, 500));
    appendFileSync(log, `${lines(10, 'follow').join('\n')}\n`);
    await waitFor(10);
    first.child.kill('SIGKILL');
    await first.exited();
    // Appended while no reporter runs, a line cut in two included.
    appendFileSync(log, `${lines(20, 'follow').slice(10).join('\n')}\nhalf a `);
    const second = spawnEdgepipe(args);
    await waitFor(20);
    appendFileSync(log, 'line\n');
    await waitFor(21);
    second.child.kill('SIGTERM');
    expect(await second.exited()).toBe(143);
    const got = await edgepipe([
      'consume',
      'e2e/follow',
      '--server',
      server.url,
      '--group',
      'g',
      '--once',
      '--wait',
      '300ms',
    ]);
    expect(got.stdout.toString()).toBe(`${lines(20, 'follow').join('\n')}\nhalf a line\n`);
  });
});

describe('with signed URLs', () => {
  it('a device URL from `edgepipe sign` appends to its topic only; a prefix URL reads and acks the namespace', async () => {
    const config = configFile({ auth: { mode: 'signed', secrets: ['topics-cli-secret-0123456789-abcdef'] } });
    const signed = await spawnServer(['--config', config]);
    try {
      const sign = async (...args: string[]) => {
        const result = await edgepipe(['sign', ...args, '--url', signed.url, '--config', config]);
        expect(result.code).toBe(0);
        return result.stdout.toString().trim();
      };
      const device = await sign('/_/topics/sig/d1', '--send');
      const reader = await sign('/_/topics/sig', '--recv', '--prefix');
      const input = `${lines(10, 'signed').join('\n')}\n`;
      expect((await edgepipe(['report', device], { input })).code).toBe(0);
      const wrong = await edgepipe(['report', device.replace('/sig/d1', '/sig/d2')], { input });
      expect(wrong.code).toBe(3);
      const got = await edgepipe([
        'consume',
        reader.replace('/_/topics/sig', '/_/topics/sig/*'),
        '--group',
        'g',
        '--once',
        '--wait',
        '300ms',
      ]);
      expect(got.code).toBe(0);
      expect(got.stdout.toString()).toBe(input);
      const again = await edgepipe([
        'consume',
        reader.replace('/_/topics/sig', '/_/topics/sig/*'),
        '--group',
        'g',
        '--once',
        '--wait',
        '300ms',
      ]);
      expect(again.stdout.toString()).toBe('');
    } finally {
      signed.kill();
    }
  });
});
