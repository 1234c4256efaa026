// The page (`/`) in a real browser: Debian's chromium driven by playwright-core, against real edgepipe
// processes, with curl on the other side where the README promises curl.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/browser.js';
import { curlGet, receiveDownload, startReceive, startSend, statusMatches } from './helpers/page-driver.js';
import { repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { selfSignedCert } from './helpers/tls-cert.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

let browser: Browser;
let contexts: BrowserContext[] = [];
let servers: ServerProcess[] = [];

beforeAll(async () => {
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  for (const context of contexts) await context.close();
  for (const server of servers) server.kill();
  contexts = [];
  servers = [];
});

async function start(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const server = await spawnServer(args, env);
  servers.push(server);
  return server;
}

async function openPage(url: string, options: { https?: boolean } = {}) {
  const context = await browser.newContext({
    acceptDownloads: true,
    ignoreHTTPSErrors: options.https === true,
  });
  contexts.push(context);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${url}/`);
  return { page, errors };
}

describe('the page over HTTP/1.1 on the in-memory broker (what `npm start` serves)', {
  timeout: 120_000,
}, () => {
  it('sends a text to curl, in a whole-body upload, and says so', async () => {
    const server = await start();
    const { page, errors } = await openPage(server.url);
    const receiving = curlGet(`${server.url}/page/text`);
    await startSend(page, { target: 'page/text', text: 'hello from the page\n' });
    await statusMatches(page, 'send', /^Sent/);
    const received = await receiving;
    expect(received.head).toMatch(/content-type: text\/plain; charset=utf-8/);
    expect(received.body.toString()).toBe('hello from the page\n');
    expect(await page.locator('#send-mode').textContent()).toMatch(/^Whole-file upload/);
    expect(errors).toEqual([]);
  });

  it('sends a file to curl under its name, and shows a link with a QR code for the receiver', async () => {
    const server = await start();
    const { page } = await openPage(server.url);
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const receiving = curlGet(`${server.url}/page/file`);
    await startSend(page, {
      target: 'page/file',
      files: [{ name: 'report 1.bin', mimeType: 'application/x-test', buffer: body }],
    });
    await statusMatches(page, 'send', /^Sent/);
    const received = await receiving;
    expect(sha256(received.body)).toBe(sha256(body));
    expect(received.head).toMatch(/content-disposition: attachment; filename="report 1.bin"/);
    expect(received.head).toMatch(/content-type: application\/x-test/);
    expect(received.head).toMatch(new RegExp(`content-length: ${body.byteLength}`));
    const link = await page.locator('#share-link').getAttribute('href');
    expect(link).toBe(`${server.url}/#recv=page%2Ffile`);
    await expect.poll(() => page.locator('#share-qr svg').count()).toBe(1);
    expect(await page.locator('#send-figures').textContent()).toMatch(/3\.0 MiB of 3\.0 MiB/);
  });

  it('sends to n receivers (?n=2): each gets the whole body', async () => {
    const server = await start();
    const { page } = await openPage(server.url);
    const body = randomBytes(1024 * 1024);
    const receivers = [curlGet(`${server.url}/page/two?n=2`), curlGet(`${server.url}/page/two?n=2`)];
    await startSend(page, {
      target: 'page/two',
      n: 2,
      files: [{ name: 'two.bin', mimeType: 'application/octet-stream', buffer: body }],
    });
    await statusMatches(page, 'send', /^Sent/);
    for (const received of await Promise.all(receivers)) expect(sha256(received.body)).toBe(sha256(body));
    // The link to share asks for ?n=2 too (a receiver without it would be refused).
    expect(await page.locator('#share-link').getAttribute('href')).toBe(
      `${server.url}/#recv=page%2Ftwo%3Fn%3D2`,
    );
  });

  it('receives from curl: a file is saved under the sender name, a text is shown', async () => {
    const server = await start();
    const { page } = await openPage(server.url);
    const dir = mkdtempSync(join(tmpdir(), 'edgepipe-page-'));
    const body = randomBytes(2 * 1024 * 1024);
    writeFileSync(join(dir, 'photo.jpg'), body);
    const sending = run('curl', [
      '-sS',
      '-T',
      join(dir, 'photo.jpg'),
      '-H',
      'Content-Disposition: attachment; filename="photo.jpg"',
      `${server.url}/page/from-curl`,
    ]);
    const saved = await receiveDownload(page, 'page/from-curl');
    expect((await sending).code).toBe(0);
    expect(saved.name).toBe('photo.jpg');
    expect(sha256(saved.bytes)).toBe(sha256(body));
    await statusMatches(page, 'recv', /^Received photo\.jpg/);

    const text = run(
      'curl',
      ['-sS', '-T', '-', '-H', 'Content-Type: text/plain', `${server.url}/page/note`],
      {
        input: 'a note <b>not bold</b>\n',
      },
    );
    await startReceive(page, 'page/note');
    await statusMatches(page, 'recv', /^Received/);
    expect(await page.locator('#recv-text').textContent()).toBe('a note <b>not bold</b>\n');
    expect(await page.locator('#recv-text b').count()).toBe(0);
    expect((await text).code).toBe(0);
  });

  it('moves several files page to page as one ZIP, and keeps a screenshot of each side', async () => {
    const server = await start();
    const sender = await openPage(server.url);
    const receiver = await openPage(server.url);
    const a = randomBytes(300_000);
    const b = Buffer.from('second file\n');
    await startSend(sender.page, {
      target: 'page/zip',
      files: [
        { name: 'a.bin', mimeType: 'application/octet-stream', buffer: a },
        { name: 'b.txt', mimeType: 'text/plain', buffer: b },
      ],
    });
    await statusMatches(sender.page, 'send', /^Waiting for 1 receiver/);
    const saved = await receiveDownload(receiver.page, 'page/zip');
    await statusMatches(sender.page, 'send', /^Sent/);
    await statusMatches(receiver.page, 'recv', /^Received/);
    expect(saved.name).toBe('2-files.zip');
    const dir = mkdtempSync(join(tmpdir(), 'edgepipe-zip-'));
    writeFileSync(join(dir, 'in.zip'), saved.bytes);
    const unzipped = await run('unzip', ['-q', 'in.zip'], { cwd: dir });
    expect(unzipped.code).toBe(0);
    expect(sha256(readFileSync(join(dir, 'a.bin')))).toBe(sha256(a));
    expect(readFileSync(join(dir, 'b.txt'), 'utf8')).toBe('second file\n');
    // The README shows the two sides as this run drew them (UPDATE_SCREENSHOTS=1 rewrites docs/images).
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      mkdirSync(join(repoRoot, 'docs/images'), { recursive: true });
      await sender.page.screenshot({ path: join(repoRoot, 'docs/images/page-send.png'), fullPage: true });
      await receiver.page.screenshot({
        path: join(repoRoot, 'docs/images/page-receive.png'),
        fullPage: true,
      });
    }
  });

  it('opens a shared link ready to receive, and works from the keyboard', async () => {
    const server = await start();
    const sender = await openPage(server.url);
    await startSend(sender.page, { target: 'page/shared link', text: 'through the link' });
    await statusMatches(sender.page, 'send', /^Waiting for 1 receiver/);
    const link = await sender.page.locator('#share-link').getAttribute('href');
    expect(link).toBe(`${server.url}/#recv=page%2Fshared%20link`);
    const receiver = await openPage(server.url);
    await receiver.page.goto(link!);
    expect(await receiver.page.locator('#recv-target').inputValue()).toBe('page/shared link');
    // The Receive button has the focus: Enter alone receives.
    await receiver.page.keyboard.press('Enter');
    await statusMatches(receiver.page, 'recv', /^Received/);
    expect(await receiver.page.locator('#recv-text').textContent()).toBe('through the link');
    await statusMatches(sender.page, 'send', /^Sent/);
  });

  it('cancels a waiting send for real: the path is free again', async () => {
    const server = await start();
    const { page } = await openPage(server.url);
    await startSend(page, { target: 'page/cancel', text: 'never sent' });
    await statusMatches(page, 'send', /^Waiting for 1 receiver/);
    await page.getByRole('button', { name: 'Cancel sending' }).click();
    await statusMatches(page, 'send', /^Cancelled\.$/);
    await expect
      .poll(async () => {
        const head = await fetch(`${server.url}/page/cancel`, { method: 'HEAD' });
        return head.headers.get('x-edgepipe-state');
      })
      .toBe('idle');
    const receiving = run('curl', ['-sS', `${server.url}/page/cancel`]);
    const sent = await run('curl', ['-sS', '-T', '-', `${server.url}/page/cancel`], { input: 'from curl' });
    expect(sent.code).toBe(0);
    expect((await receiving).stdout.toString()).toBe('from curl');
  });

  it("shows a 4xx in the server's words", async () => {
    const server = await start([], { EDGEPIPE_CONFIG: JSON.stringify({ limits: { maxBodyBytes: 1000 } }) });
    const { page } = await openPage(server.url);
    await startSend(page, {
      target: 'page/too-big',
      files: [{ name: 'big.bin', mimeType: 'application/octet-stream', buffer: randomBytes(5000) }],
    });
    const status = await statusMatches(page, 'send', /^Failed/);
    expect(status).toMatch(/413/);
    expect(status).toMatch(/this server accepts at most 1000/);
  });
});

describe('the page over HTTP/2 with TLS', { timeout: 120_000 }, () => {
  it('streams the upload (fetch with duplex half) and receivers get the length', async () => {
    const { cert, key } = await selfSignedCert();
    const server = await start(['--tls-cert', cert, '--tls-key', key]);
    const { page, errors } = await openPage(server.url, { https: true });
    const body = randomBytes(20 * 1024 * 1024);
    const receiving = curlGet(`${server.url}/page/h2`, ['-k']);
    await startSend(page, {
      target: 'page/h2',
      files: [{ name: 'stream.bin', mimeType: 'application/octet-stream', buffer: body }],
    });
    await statusMatches(page, 'send', /^Sent/);
    expect(await page.locator('#send-mode').textContent()).toBe('Streaming upload over HTTP/2.');
    const received = await receiving;
    expect(sha256(received.body)).toBe(sha256(body));
    expect(received.head).toMatch(new RegExp(`content-length: ${body.byteLength}`));
    expect(errors).toEqual([]);
  });
});
