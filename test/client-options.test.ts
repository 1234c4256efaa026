// The client's options end to end (issue 12): real `edgepipe send`/`recv` processes against a real server.
// Credentials (--token, EDGEPIPE_TOKEN, signed URLs), the headers a sender hands its receivers, -q, a wrong
// passphrase, a 429 with Retry-After from a test-owned front server, a file changed between a cut and the
// in-run resume, and the progress bar on a terminal.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CuttingProxy, startCuttingProxy } from './helpers/cutting-proxy.js';
import { type RunResult, repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;
const main = join(repoRoot, 'dist/cli/main.js');
const work = mkdtempSync(join(tmpdir(), 'edgepipe-options-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const QUICK = ['--retry-base', '50ms', '--retry-cap', '300ms', '--retry-for', '10s'];
const TOKEN = 'options-token-0123456789abcdef';
const SECRET = 'options-secret-options-secret-options';

function edgepipe(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<RunResult> {
  return run(process.execPath, [main, ...args], {
    env: { EDGEPIPE_STATE_DIR: join(work, 'state'), ...env },
    timeoutMs: 60_000,
    ...(cwd && { cwd }),
  });
}

/** A file of `size` random bytes in the work folder. */
function inputFile(name: string, size: number): { path: string; data: Buffer } {
  const data = randomBytes(size);
  const path = join(work, name);
  writeFileSync(path, data);
  return { path, data };
}

/** A receiver, then a sender 300 ms later; both results. */
async function pair(recv: string[], send: string[], recvEnv: NodeJS.ProcessEnv = {}, sendEnv = recvEnv) {
  const receiving = edgepipe(['recv', ...recv, ...QUICK], recvEnv);
  await delay(300);
  const sent = await edgepipe(['send', ...send, ...QUICK], sendEnv);
  return { sent, received: await receiving };
}

function configFile(value: unknown): string {
  const file = join(work, `config-${randomBytes(4).toString('hex')}.json`);
  writeFileSync(file, JSON.stringify(value));
  return file;
}

describe('credentials: --token, EDGEPIPE_TOKEN and signed URLs', () => {
  let tokenServer: ServerProcess;
  let signedServer: ServerProcess;
  beforeAll(async () => {
    [tokenServer, signedServer] = await Promise.all([
      spawnServer([], {
        EDGEPIPE_CONFIG: configFile({
          auth: { mode: 'token', tokens: [{ name: 'ci', token: TOKEN, scopes: ['send', 'recv'] }] },
        }),
      }),
      spawnServer([], {
        EDGEPIPE_CONFIG: configFile({ auth: { mode: 'signed' } }),
        EDGEPIPE_SECRETS: SECRET,
      }),
    ]);
  });
  afterAll(() => {
    tokenServer?.kill();
    signedServer?.kill();
  });

  it('--token on send and EDGEPIPE_TOKEN on recv move a file byte-exact', async () => {
    const { path, data } = inputFile('token.in', 2 * MiB + 7);
    const { sent, received } = await pair(
      [`${tokenServer.url}/t/ok`],
      [`${tokenServer.url}/t/ok`, path, '--token', TOKEN],
      { EDGEPIPE_TOKEN: TOKEN },
      {},
    );
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(sha256(received.stdout)).toBe(sha256(data));
  });

  it('a wrong or missing token is refused: exit 3 and the server’s one-line reason', async () => {
    const { path } = inputFile('token-bad.in', 1000);
    const reason = async (token?: string) => {
      const args = ['-sS', '-T', path, `${tokenServer.url}/t/bad`];
      const answer = await run('curl', token ? ['-H', `Authorization: Bearer ${token}`, ...args] : args);
      return answer.stdout
        .toString()
        .trim()
        .replace(/^\[ERROR\] /, '');
    };
    const wrong = await edgepipe([
      'send',
      `${tokenServer.url}/t/bad`,
      path,
      '--token',
      'x'.repeat(20),
      ...QUICK,
    ]);
    expect(wrong.code, wrong.stderr).toBe(3);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toContain(await reason('x'.repeat(20)));
    const none = await edgepipe(['recv', `${tokenServer.url}/t/bad`, '-q', ...QUICK]);
    expect(none.code, none.stderr).toBe(3);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toContain(await reason());
    expect(none.stdout.length).toBe(0);
  });

  it('URLs from `edgepipe sign` work as targets of send and recv; a recv URL used to send is refused', async () => {
    const sign = async (...args: string[]) => {
      const signed = await edgepipe(
        ['sign', '/s/file.bin', ...args, '--ttl', '5m', '--url', signedServer.url],
        {
          EDGEPIPE_SECRETS: SECRET,
        },
      );
      expect(signed.code, signed.stderr).toBe(0);
      return signed.stdout.toString().trim();
    };
    const sendUrl = await sign('--send');
    const recvUrl = await sign('--recv');
    const { path, data } = inputFile('signed.in', MiB + 3);
    const output = join(work, 'signed.out');
    const { sent, received } = await pair([recvUrl, output], [sendUrl, path]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(sha256(readFileSync(output))).toBe(sha256(data));

    // -q: the refusal is then the only line (no notice that this in-memory server cannot resume).
    const refused = await edgepipe(['send', recvUrl, path, '-q', ...QUICK]);
    const told = await run('curl', ['-sS', '-T', path, recvUrl]);
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain(
      told.stdout
        .toString()
        .trim()
        .replace(/^\[ERROR\] /, ''),
    );
  });
});

describe('headers, -q and a wrong passphrase, in memory', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await spawnServer();
  });
  afterAll(() => server?.kill());

  it('--header (repeated), --content-type and --filename reach the receiver; recv -O names its file', async () => {
    const { path, data } = inputFile('headers.in', 300_000);
    const headerArgs = [
      ...['--header', 'X-Piping: a', '--header', 'X-Piping: b, c'],
      ...['--content-type', 'application/x-edgepipe-test', '--filename', 'report 1.txt'],
    ];
    const curl = run('curl', ['-sS', '-D', '-', '-o', join(work, 'headers.curl'), `${server.url}/h/curl`]);
    await delay(300);
    const sent = await edgepipe(['send', `${server.url}/h/curl`, path, ...headerArgs, ...QUICK]);
    expect(sent.code, sent.stderr).toBe(0);
    const head = (await curl).stdout.toString().toLowerCase();
    expect(head).toContain('content-type: application/x-edgepipe-test\r\n');
    expect(head).toContain('content-disposition: attachment; filename="report 1.txt"\r\n');
    expect(head.match(/^x-piping: .*$/gm)).toEqual(['x-piping: a', 'x-piping: b, c']);
    expect(readFileSync(join(work, 'headers.curl')).equals(data)).toBe(true);

    const into = join(work, 'dash-o');
    mkdirSync(into, { recursive: true });
    const receiving = edgepipe(['recv', `${server.url}/h/o`, '-O', ...QUICK], {}, into);
    await delay(300);
    const sentO = await edgepipe(['send', `${server.url}/h/o`, path, ...headerArgs, ...QUICK]);
    const received = await receiving;
    expect(sentO.code, sentO.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(readFileSync(join(into, 'report 1.txt')).equals(data)).toBe(true);
  });

  it('-q prints nothing on stderr for a successful transfer (even the in-memory notice)', async () => {
    const { path, data } = inputFile('quiet.in', MiB);
    const loud = await pair([`${server.url}/q/loud`], [`${server.url}/q/loud`, path]);
    // Without -q the same transfer says something (this server cannot resume): -q has something to hide.
    expect(loud.sent.stderr).toMatch(/cannot resume/);
    const { sent, received } = await pair(
      [`${server.url}/q/quiet`, '-q'],
      [`${server.url}/q/quiet`, path, '-q', '--progress', 'json'],
    );
    expect(sent.code).toBe(0);
    expect(received.code).toBe(0);
    expect(sent.stderr).toBe('');
    expect(received.stderr).toBe('');
    expect(received.stdout.equals(data)).toBe(true);
  });

  it.each(['file', 'stdout'])(
    'recv with a wrong EDGEPIPE_PASSPHRASE exits 5 and writes nothing (%s)',
    async (to) => {
      const { path } = inputFile(`wrong-pass-${to}.in`, 200_000);
      const output = join(work, `wrong-pass-${to}.out`);
      const { sent, received } = await pair(
        [`${server.url}/p/${to}`, ...(to === 'file' ? [output] : []), '--passphrase'],
        [`${server.url}/p/${to}`, path, '--passphrase'],
        { EDGEPIPE_PASSPHRASE: 'not the one' },
        { EDGEPIPE_PASSPHRASE: 'the right one' },
      );
      expect(received.code, received.stderr).toBe(5);
      expect(received.stderr).toMatch(/wrong passphrase or key/);
      expect(received.stdout.length).toBe(0);
      if (to === 'file') expect(existsSync(output) ? statSync(output).size : 0).toBe(0);
      expect(sent.code === 0 || sent.code === 6, sent.stderr).toBe(true);
    },
    60_000,
  );
});

/**
 * A front server of the test's own: the first request it gets is answered 429 with `Retry-After: 1`,
 * every later one is passed to `target` (bodies streamed both ways). Records when each request came.
 */
async function startRateLimitedFront(
  target: string,
): Promise<{ url: string; arrivals: number[]; close(): Promise<void> }> {
  const arrivals: number[] = [];
  const server: Server = createServer((req, res) => {
    arrivals.push(performance.now());
    if (arrivals.length === 1) {
      req.resume();
      res.writeHead(429, { 'Retry-After': '1', 'Content-Type': 'text/plain' });
      res.end('[ERROR] Too many requests: wait a second.\n');
      return;
    }
    const upstream = request(
      `${target}${req.url}`,
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    arrivals,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('a 429 with Retry-After, over the wire', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await spawnServer();
  });
  afterAll(() => server?.kill());

  it('each side waits the second the server asked for (not its 50 ms backoff), then succeeds', async () => {
    const { path, data } = inputFile('retry-after.in', MiB);
    const fronts = [await startRateLimitedFront(server.url), await startRateLimitedFront(server.url)];
    try {
      // The client's own backoff would wait under 100 ms: only Retry-After explains a wait of a second.
      const fast = [
        '--retry-base',
        '50ms',
        '--retry-cap',
        '100ms',
        '--retry-for',
        '20s',
        '--progress',
        'none',
      ];
      const receiving = edgepipe(['recv', `${fronts[0]!.url}/ra/x`, ...fast]);
      await delay(300);
      const sent = await edgepipe(['send', `${fronts[1]!.url}/ra/x`, path, ...fast]);
      const received = await receiving;
      expect(sent.code, sent.stderr).toBe(0);
      expect(received.code, received.stderr).toBe(0);
      expect(sha256(received.stdout)).toBe(sha256(data));
      for (const [side, result] of [
        ['recv', received],
        ['send', sent],
      ] as const) {
        const { arrivals } = fronts[side === 'recv' ? 0 : 1]!;
        expect(arrivals.length, side).toBeGreaterThanOrEqual(2);
        const waited = arrivals[1]! - arrivals[0]!;
        expect(waited, `${side} waited ${waited} ms`).toBeGreaterThanOrEqual(950);
        expect(waited, `${side} waited ${waited} ms`).toBeLessThan(3000);
        expect(result.stderr).toMatch(/HTTP 429.*retrying in 1\.0 s/);
      }
    } finally {
      for (const front of fronts) await front.close();
    }
  });
});

describe('a file changed between a cut and the resume, on Redis', () => {
  let redis: TestRedis;
  let server: ServerProcess;
  beforeAll(async () => {
    redis = await startTestRedis();
    server = await spawnServer(['--redis', redis.url]);
  }, 60_000);
  afterAll(async () => {
    server?.kill();
    await redis?.stop();
  });

  it('the sender refuses to resume with other bytes: exit 5 and a line saying why; nothing spliced', async () => {
    const { path, data } = inputFile('changed.in', 8 * MiB);
    const output = join(work, 'changed.out');
    let proxy: CuttingProxy | undefined;
    let changedAt = -1;
    // The upload is cut 2 MiB into its connection. The client's next connection (its HEAD asking where to
    // resume) is accepted only after the cut: the file is rewritten right then (same size, new bytes and
    // mtime), before the client can read it again.
    proxy = await startCuttingProxy({
      target: { host: '127.0.0.1', port: Number(new URL(server.url).port) },
      plan: (index) => {
        if (proxy && proxy.cuts > 0) {
          if (changedAt < 0) {
            changedAt = index;
            writeFileSync(path, randomBytes(data.length));
          }
          return undefined;
        }
        return { cutUpAt: 2 * MiB };
      },
    });
    try {
      const receiving = edgepipe(['recv', `${server.url}/c/x`, output, '--stall-timeout', '2s', ...QUICK]);
      await delay(300);
      const sent = await edgepipe(['send', `${proxy.url}/c/x`, path, ...QUICK]);
      expect(proxy.cuts).toBe(1);
      expect(changedAt).toBeGreaterThan(0);
      expect(sent.code, sent.stderr).toBe(5);
      expect(sent.stderr).toMatch(/changed since the transfer began.*refusing to resume/);
      const received = await receiving;
      expect(received.code).not.toBe(0);
      // What the receiver wrote is the original file's start, never bytes of the new one.
      const got = readFileSync(output);
      expect(got.length).toBeGreaterThan(0);
      expect(got.equals(data.subarray(0, got.length))).toBe(true);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe('the progress bar on a terminal (script(1) gives stderr a pty)', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await spawnServer();
  });
  afterAll(() => server?.kill());

  it('shows "waiting for 1 receiver", then bytes and a rate', async () => {
    const { path, data } = inputFile('tty.in', 4 * MiB);
    const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
    const command = [process.execPath, main, 'send', `${server.url}/tty/x`, path, ...QUICK]
      .map(quote)
      .join(' ');
    const sending = run('script', ['-qfec', command, '/dev/null'], {
      env: { EDGEPIPE_STATE_DIR: join(work, 'state'), COLUMNS: '120' },
      timeoutMs: 60_000,
    });
    // Long enough for the bar to draw its waiting state (5 frames a second).
    await delay(1500);
    // A receiver slowed to 1 MiB/s: the transfer lasts seconds, so the bar shows a rate while it runs.
    const received = await run('curl', ['-sS', '--limit-rate', '1M', `${server.url}/tty/x`]);
    const sent = await sending;
    const screen = sent.stdout.toString();
    expect(sent.code, screen).toBe(0);
    expect(sha256(received.stdout)).toBe(sha256(data));
    expect(screen).toContain('waiting for 1 receiver');
    expect(screen).toMatch(/\d+(\.\d)? MiB \/ 4\.0 MiB {2}[1-9][\d.]* (KiB|MiB)\/s/);
  });
});
