import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from './helpers/processes.js';
import { SSHD_HOST_KEY_ALIAS, startSshd, type TestSshd } from './helpers/sshd.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const temp = mkdtempSync(join(tmpdir(), 'sshd-helper-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/**
 * A plain TCP relay as a ProxyCommand, standing in for `edgepipe connect ... --stdio`: stdin to 127.0.0.1:%p, the
 * socket to stdout. Node rather than nc, which many machines lack. ssh expands %p and runs `exec <this>` with
 * $SHELL -c; the script avoids `%`, `$` and double quotes so neither ssh nor the shell touches it.
 */
const relayScript =
  "const s=require('net').connect(+process.argv[1],'127.0.0.1',()=>console.error('relay connected'));" +
  "s.on('error',()=>process.exit(1));process.stdin.pipe(s).pipe(process.stdout)";
const relayProxyCommand = `'${process.execPath}' -e "${relayScript}" %p`;

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(true));
  });
}

describe('a real sshd for tests', () => {
  let sshd: TestSshd;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(() => sshd?.close());

  it('runs a command as the current user and carries 10 MiB back byte-exact', async () => {
    const result = await run('ssh', [
      ...sshd.sshArgs(),
      `${sshd.user}@127.0.0.1`,
      'head -c 10485760 /dev/zero | sha256sum',
    ]);
    expect(result.stderr).not.toMatch(/warning/i);
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(`${sha256(new Uint8Array(10 * 1024 * 1024))}  -\n`);
  });

  it('carries stdin to the command byte-exact', async () => {
    const body = randomBytes(5 * 1024 * 1024 + 3);
    const result = await run('ssh', [...sshd.sshArgs(), `${sshd.user}@127.0.0.1`, 'sha256sum'], {
      input: body,
    });
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(`${sha256(body)}  -\n`);
  });

  it('works through a ProxyCommand relay, the host key checked under its alias whatever the host name', async () => {
    // The name does not resolve: ssh can only have reached sshd through the relay.
    const result = await run('ssh', [
      ...sshd.sshArgs(['-o', `ProxyCommand=${relayProxyCommand}`]),
      `${sshd.user}@through-the-relay.invalid`,
      'head -c 10485760 /dev/zero | sha256sum',
    ]);
    expect(result.stderr).toMatch(/^relay connected$/m);
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(`${sha256(new Uint8Array(10 * 1024 * 1024))}  -\n`);
  });

  it('files the host key under [127.0.0.1]:port and the alias, and ssh checks it', async () => {
    for (const name of [`[127.0.0.1]:${sshd.port}`, SSHD_HOST_KEY_ALIAS]) {
      const found = await run('ssh-keygen', ['-F', name, '-f', sshd.knownHostsPath]);
      expect(found.code, name).toBe(0);
    }
    // A test's own options come first and win: with no known host, BatchMode ssh refuses the host.
    const unknown = await run('ssh', [
      ...sshd.sshArgs(['-o', 'UserKnownHostsFile=/dev/null']),
      `${sshd.user}@127.0.0.1`,
      'true',
    ]);
    expect(unknown.code).toBe(255);
    expect(unknown.stderr).toMatch(/Host key verification failed/);
  });

  it('refuses a key it was not given (exit 255)', async () => {
    const wrongKey = join(temp, 'wrong_key');
    expect((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey])).code).toBe(0);
    const result = await run('ssh', [...sshd.sshArgs([], wrongKey), `${sshd.user}@127.0.0.1`, 'true']);
    expect(result.code).toBe(255);
    expect(result.stderr).toMatch(/Permission denied \(publickey\)/);
  });
});

describe('closing the test sshd', () => {
  it('ends a live session, stops listening and removes its files', async () => {
    const sshd = await startSshd();
    try {
      const session = run('ssh', [...sshd.sshArgs(), `${sshd.user}@127.0.0.1`, 'echo started; sleep 60'], {
        timeoutMs: 20_000,
      });
      // Wait until the session runs (sshd logs the accepted key) before closing under it.
      for (let i = 0; i < 200 && !sshd.output().includes('Accepted publickey'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect(sshd.output()).toMatch(/Accepted publickey for \S+ from 127\.0\.0\.1/);
      const started = Date.now();
      await sshd.close();
      const ended = await session;
      expect(ended.code).toBe(255);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await refused(sshd.port)).toBe(true);
    } finally {
      // Closing twice is harmless; a failed expectation above must not leave sshd running.
      await sshd.close();
    }
    expect(existsSync(sshd.dir)).toBe(false);
  });
});
