import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import { run } from './processes.js';

/** What the page's send form is given. */
export interface PageSend {
  readonly target: string;
  readonly text?: string;
  readonly files?: ReadonlyArray<{ name: string; mimeType: string; buffer: Buffer }>;
  readonly passphrase?: string;
  readonly n?: number;
  readonly token?: string;
}

/** Fills the send form as a user would (labels, not ids, where a user reads them) and presses Send. */
export async function startSend(page: Page, send: PageSend): Promise<void> {
  if (send.token) await page.getByLabel('Token').fill(send.token);
  await page.locator('#send-target').fill(send.target);
  if (send.n) await page.getByLabel('Receivers').fill(String(send.n));
  if (send.files) await page.locator('#send-files').setInputFiles(send.files.map((file) => ({ ...file })));
  if (send.text !== undefined) await page.locator('#send-text').fill(send.text);
  if (send.passphrase) await page.locator('#send-passphrase').fill(send.passphrase);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
}

/** Fills the receive form and presses Receive. */
export async function startReceive(
  page: Page,
  target: string,
  options: { passphrase?: string; token?: string } = {},
): Promise<void> {
  if (options.token) await page.getByLabel('Token').fill(options.token);
  await page.locator('#recv-target').fill(target);
  if (options.passphrase) await page.locator('#recv-passphrase').fill(options.passphrase);
  await page.getByRole('button', { name: 'Receive', exact: true }).click();
}

/** Receives into a download: its suggested name and its bytes. */
export async function receiveDownload(
  page: Page,
  target: string,
  options: { passphrase?: string; timeoutMs?: number } = {},
): Promise<{ name: string; bytes: Buffer }> {
  const download = page.waitForEvent('download', { timeout: options.timeoutMs ?? 60_000 });
  await startReceive(page, target, options);
  const saved = await download;
  const path = await saved.path();
  return { name: saved.suggestedFilename(), bytes: readFileSync(path) };
}

/** Waits until a side's live status matches (the page's words, as a screen reader announces them). */
export async function statusMatches(
  page: Page,
  side: 'send' | 'recv',
  pattern: RegExp,
  timeoutMs = 60_000,
): Promise<string> {
  let last = '';
  await expect
    .poll(
      async () => {
        last = (await page.locator(`#${side}-status`).textContent()) ?? '';
        return last;
      },
      { timeout: timeoutMs, interval: 100 },
    )
    .toMatch(pattern);
  return last;
}

/** `curl` as the other side: the answer's head (lowercase names) and body apart (`-D -` writes both). */
export async function curlGet(
  url: string,
  extra: readonly string[] = [],
): Promise<{ head: string; body: Buffer }> {
  const result = await run('curl', ['-sS', '-D', '-', ...extra, url], { timeoutMs: 120_000 });
  if (result.code !== 0) throw new Error(`curl ${url} failed (${result.code}): ${result.stderr}`);
  const end = result.stdout.indexOf('\r\n\r\n');
  return {
    head: result.stdout.subarray(0, end).toString().toLowerCase(),
    body: result.stdout.subarray(end + 4),
  };
}
