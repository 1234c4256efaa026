// The page in a real browser (Debian's chromium through playwright-core) where it meets the rest of the
// product: piecewise uploads on Redis, an upload cut mid-way and resumed, end-to-end encryption with the
// CLI both ways, signed URLs and tokens.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/browser.js';
import { type CuttingProxy, startCuttingProxy } from './helpers/cutting-proxy.js';
import { curlGet, receiveDownload, startReceive, startSend, statusMatches } from './helpers/page-driver.js';
import { repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const PASSPHRASE = 'correct horse battery staple';
const SECRET = 'page-secret-page-secret-page-secret-page';
const edgepipe = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], { timeoutMs: 120_000, env });

let browser: Browser;
let redis: TestRedis;
let contexts: BrowserContext[] = [];
let servers: ServerProcess[] = [];
let proxies: CuttingProxy[] = [];

beforeAll(async () => {
  [browser, redis] = await Promise.all([launchChromium(), startTestRedis()]);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await redis?.stop();
});
afterEach(async () => {
  for (const context of contexts) await context.close();
  for (const proxy of proxies) await proxy.close();
  for (const server of servers) server.kill();
  contexts = [];
  servers = [];
  proxies = [];
});

async function start(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const server = await spawnServer(args, env);
  servers.push(server);
  return server;
}

/** An edgepipe on the suite's Redis (each test names pipes of its own). */
function startOnRedis(): Promise<ServerProcess> {
  return start(['--redis', redis.url]);
}

async function openPage(url: string) {
  const context = await browser.newContext({ acceptDownloads: true });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${url}/`);
  return page;
}

describe('the page on a server that resumes (Redis), over HTTP/1.1', { timeout: 180_000 }, () => {
  it('uploads in pieces, and receivers get the whole body and its length', async () => {
    const server = await startOnRedis();
    const page = await openPage(server.url);
    const body = randomBytes(20 * 1024 * 1024 + 5);
    const receiving = curlGet(`${server.url}/page/pieces`);
    await startSend(page, {
      target: 'page/pieces',
      files: [{ name: 'pieces.bin', mimeType: 'application/octet-stream', buffer: body }],
    });
    await statusMatches(page, 'send', /^Sent/, 120_000);
    expect(await page.locator('#send-mode').textContent()).toMatch(/^Upload in pieces of 8 MiB/);
    const received = await receiving;
    expect(sha256(received.body)).toBe(sha256(body));
    expect(received.head).toMatch(new RegExp(`content-length: ${body.byteLength}`));
  });

  it('resumes an upload cut mid-way, by itself', async () => {
    const server = await startOnRedis();
    const { port } = new URL(server.url);
    // Every connection is cut once its upload passes 5 MiB: a piece of 8 MiB never gets through whole, and
    // the page must resume each from what the broker holds.
    const proxy = await startCuttingProxy({
      target: { host: '127.0.0.1', port: Number(port) },
      plan: () => ({ cutUpAt: 5 * 1024 * 1024 }),
    });
    proxies.push(proxy);
    const page = await openPage(proxy.url);
    const body = randomBytes(24 * 1024 * 1024);
    const receiving = curlGet(`${server.url}/page/cut`);
    await startSend(page, {
      target: 'page/cut',
      files: [{ name: 'cut.bin', mimeType: 'application/octet-stream', buffer: body }],
    });
    await statusMatches(page, 'send', /^Sent/, 150_000);
    expect(proxy.cuts).toBeGreaterThanOrEqual(1);
    const received = await receiving;
    expect(sha256(received.body)).toBe(sha256(body));
  });
});

describe('end-to-end encryption, the page and the CLI in the same format', { timeout: 180_000 }, () => {
  it('page to `edgepipe recv --passphrase`, and `edgepipe send --passphrase` to the page', async () => {
    const server = await start();
    const page = await openPage(server.url);
    const dir = mkdtempSync(join(tmpdir(), 'edgepipe-page-crypto-'));
    const body = randomBytes(3 * 1024 * 1024 + 1);
    const env = { EDGEPIPE_PASSPHRASE: PASSPHRASE };
    const receiving = edgepipe(
      ['recv', `${server.url}/page/sealed-1`, join(dir, 'out.bin'), '--passphrase', '-q'],
      env,
    );
    await startSend(page, {
      target: 'page/sealed-1',
      files: [{ name: 'secret.bin', mimeType: 'application/octet-stream', buffer: body }],
      passphrase: PASSPHRASE,
    });
    await statusMatches(page, 'send', /^Sent/, 120_000);
    const received = await receiving;
    expect(received.stderr).toBe('');
    expect(received.code).toBe(0);
    expect(sha256(readFileSync(join(dir, 'out.bin')))).toBe(sha256(body));

    const back = randomBytes(2 * 1024 * 1024 + 3);
    writeFileSync(join(dir, 'back.bin'), back);
    const sending = edgepipe(
      ['send', `${server.url}/page/sealed-2`, join(dir, 'back.bin'), '--passphrase', '-q'],
      env,
    );
    const saved = await receiveDownload(page, 'page/sealed-2', {
      passphrase: PASSPHRASE,
      timeoutMs: 120_000,
    });
    expect((await sending).code).toBe(0);
    expect(sha256(saved.bytes)).toBe(sha256(back));
    // A sealed body names no file in the clear: the page saves it under the path's last segment.
    expect(saved.name).toBe('sealed-2');
  });

  it('says so when the passphrase is wrong, and saves nothing', async () => {
    const server = await start();
    const page = await openPage(server.url);
    const sending = edgepipe(['send', `${server.url}/page/sealed-wrong`, '-', '--passphrase', '-q'], {
      EDGEPIPE_PASSPHRASE: PASSPHRASE,
    });
    let downloads = 0;
    page.on('download', () => {
      downloads += 1;
    });
    await startReceive(page, 'page/sealed-wrong', { passphrase: 'not the passphrase' });
    const status = await statusMatches(page, 'recv', /^Failed/, 120_000);
    expect(status).toMatch(/wrong passphrase or key/);
    expect(downloads).toBe(0);
    expect(await page.locator('#recv-result').isHidden()).toBe(true);
    await sending;
  });

  it('refuses a sealed body without a passphrase, in words', async () => {
    const server = await start();
    const page = await openPage(server.url);
    const sending = edgepipe(['send', `${server.url}/page/sealed-none`, '-', '--passphrase', '-q'], {
      EDGEPIPE_PASSPHRASE: PASSPHRASE,
    });
    await startReceive(page, 'page/sealed-none');
    expect(await statusMatches(page, 'recv', /^Failed/, 120_000)).toMatch(
      /encrypted this body: enter its passphrase/,
    );
    await sending;
  });
});

describe('signed and token modes', { timeout: 120_000 }, () => {
  it('sends through a pasted signed URL, says a send-only URL cannot be shared, receives through another', async () => {
    const server = await start([], {
      EDGEPIPE_CONFIG: JSON.stringify({ auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
    });
    const sign = async (scope: string) => {
      const signed = await edgepipe(['sign', '/page/signed', scope, '--ttl', '600', '--url', server.url], {
        EDGEPIPE_SECRETS: SECRET,
      });
      expect(signed.code).toBe(0);
      return signed.stdout.toString().trim();
    };
    const [sendUrl, recvUrl] = [await sign('--send'), await sign('--recv')];
    const sender = await openPage(server.url);
    const receiver = await openPage(server.url);
    await startSend(sender, { target: sendUrl, text: 'signed hello' });
    await statusMatches(sender, 'send', /^Waiting for 1 receiver/);
    expect(await sender.locator('#share-note').textContent()).toMatch(/signed for sending only/);
    await startReceive(receiver, recvUrl);
    await statusMatches(receiver, 'recv', /^Received/);
    expect(await receiver.locator('#recv-text').textContent()).toBe('signed hello');
    await statusMatches(sender, 'send', /^Sent/);

    // A path without a signature is refused in the server's words.
    await startSend(sender, { target: 'page/unsigned', text: 'x' });
    expect(await statusMatches(sender, 'send', /^Failed/)).toMatch(/This server only serves signed URLs/);
  });

  it('sends and receives with a pasted token, and refuses a wrong one in words', async () => {
    const server = await start([], {
      EDGEPIPE_CONFIG: JSON.stringify({
        auth: {
          mode: 'token',
          tokens: [{ name: 'page', token: 'page-token-1234567890', scopes: ['send', 'recv'] }],
        },
      }),
    });
    const sender = await openPage(server.url);
    const receiver = await openPage(server.url);
    await startSend(sender, { target: 'page/token', text: 'token hello', token: 'page-token-1234567890' });
    await startReceive(receiver, 'page/token', { token: 'page-token-1234567890' });
    await statusMatches(receiver, 'recv', /^Received/);
    expect(await receiver.locator('#recv-text').textContent()).toBe('token hello');
    const other = await openPage(server.url);
    await startSend(other, { target: 'page/token-2', text: 'x', token: 'wrong-token-000000000' });
    expect(await statusMatches(other, 'send', /^Failed/)).toMatch(/40[13]/);
  });
});
