import { type Browser, chromium } from 'playwright-core';

/** Debian's chromium (`.ci/run` installs it); playwright-core drives it and downloads no browser. */
export const CHROMIUM = process.env.EDGEPIPE_CHROMIUM ?? '/usr/bin/chromium';

/**
 * A headless Chromium for the page's tests. No sandbox (CI runs as root); no background networking, sync or
 * component updates (this machine's network is closed: they would only fail, many at a time); no QUIC.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
