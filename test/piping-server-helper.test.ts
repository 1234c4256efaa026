import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  installPipingServer,
  PIPING_SERVER_VERSION,
  PipingServerInstallError,
} from '../bench/piping-server.js';
import { startCuttingProxy } from './helpers/cutting-proxy.js';
import { startTestPipingServer, type TestPipingServer } from './helpers/piping-server.js';
import { run } from './helpers/processes.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const temp = mkdtempSync(join(tmpdir(), 'piping-helper-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('a real piping-server for tests', () => {
  let server: TestPipingServer;
  // The first run on a machine installs it from npm.
  beforeAll(async () => {
    server = await startTestPipingServer();
  }, 180_000);
  afterAll(() => server?.kill());

  it('is the pinned version', async () => {
    expect((await (await fetch(`${server.url}/version`)).text()).trim()).toBe(PIPING_SERVER_VERSION);
  });

  it('carries a curl PUT of a file (Content-Length) to a curl GET byte-exact', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const file = join(temp, 'body');
    writeFileSync(file, body);
    const receiver = run('curl', ['-sSf', `${server.url}/file-path`]);
    const sender = run('curl', ['-sSf', '-T', file, `${server.url}/file-path`]);
    const [received, sent] = await Promise.all([receiver, sender]);
    expect([received.code, sent.code]).toEqual([0, 0]);
    expect(received.stdout.byteLength).toBe(body.byteLength);
    expect(sha256(received.stdout)).toBe(sha256(body));
  });

  it('carries a streamed curl PUT from stdin (chunked) byte-exact, the sender going first', async () => {
    const body = randomBytes(2 * 1024 * 1024 + 5);
    const sender = run('curl', ['-sSf', '-T', '-', `${server.url}/stdin-path`], { input: body });
    // piping-server holds the sender until a receiver comes.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const received = await run('curl', ['-sSf', `${server.url}/stdin-path`]);
    expect((await sender).code).toBe(0);
    expect(received.code).toBe(0);
    expect(sha256(received.stdout)).toBe(sha256(body));
  });

  it('works behind the cutting proxy: a receiver cut mid-body gets an exact prefix, then curl fails', async () => {
    const proxy = await startCuttingProxy({
      target: { host: '127.0.0.1', port: Number(new URL(server.url).port) },
      plan: () => ({ cutDownAt: 300_000 }),
    });
    try {
      const body = randomBytes(1024 * 1024);
      const receiver = run('curl', ['-sS', `${proxy.url}/cut-path`]);
      const sender = run('curl', ['-sS', '-T', '-', `${server.url}/cut-path`], {
        input: body,
        timeoutMs: 10_000,
      });
      const received = await receiver;
      // curl's 18 (partial file) or 56 (receive failure: the reset)
      expect([18, 56]).toContain(received.code);
      // The response's headers took some of the 300,000 bytes; the rest is the body's exact prefix.
      expect(received.stdout.byteLength).toBeGreaterThan(290_000);
      expect(received.stdout.byteLength).toBeLessThan(300_000);
      expect(received.stdout.equals(body.subarray(0, received.stdout.byteLength))).toBe(true);
      await sender;
    } finally {
      await proxy.close();
    }
  });

  it('kill() stops the process', async () => {
    const other = await startTestPipingServer();
    await other.kill();
    await expect(fetch(`${other.url}/version`)).rejects.toThrow();
  });
});

describe('installing piping-server', () => {
  it('throws PipingServerInstallError with npm’s message when the registry cannot be reached', async () => {
    const workDir = join(temp, 'offline');
    const attempt = installPipingServer({
      workDir,
      env: {
        // A registry nobody listens on, and a cache of its own so that nothing cached stands in for it.
        npm_config_registry: 'http://127.0.0.1:9/',
        npm_config_cache: join(temp, 'npm-cache'),
        npm_config_fetch_retries: '0',
        npm_config_offline: 'false',
      },
    });
    await expect(attempt).rejects.toBeInstanceOf(PipingServerInstallError);
    await expect(attempt).rejects.toMatchObject({
      code: 'PIPING_SERVER_INSTALL',
      message: expect.stringMatching(
        /npm install piping-server@1\.12\.9 .* exited with \d+.*\n.*ECONNREFUSED/s,
      ),
    });
  }, 60_000);

  it('installs once when several test files ask at the same time', async () => {
    const workDir = join(temp, 'shared');
    const installs: string[] = [];
    const log = (line: string) => installs.push(line);
    const entries = await Promise.all([1, 2, 3].map(() => installPipingServer({ workDir, log })));
    expect(installs).toHaveLength(1);
    expect(new Set(entries).size).toBe(1);
    expect(entries[0]).toBe(join(workDir, 'node_modules', 'piping-server', 'dist', 'src', 'index.js'));
  }, 180_000);
});
