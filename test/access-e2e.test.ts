// Access control and TLS as a user meets them: real server processes, curl, and `edgepipe sign`.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { selfSignedCert } from './helpers/tls-cert.js';

const SECRET = 'e2e-secret-e2e-secret-e2e-secret-e2e';
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const edgepipe = (args: string[]) =>
  run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], { timeoutMs: 30_000 });

let servers: ServerProcess[] = [];
afterEach(() => {
  for (const server of servers) server.kill();
  servers = [];
});

async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const server = await spawnServer(args, env);
  servers.push(server);
  return server;
}

/** Runs `edgepipe sign` as a user would, with the secret in the environment. */
async function sign(args: string[], url: string): Promise<string> {
  const result = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    import('node:child_process').then(({ execFile }) => {
      execFile(
        process.execPath,
        [join(repoRoot, 'dist/cli/main.js'), 'sign', ...args, '--url', url],
        { env: { ...process.env, EDGEPIPE_SECRETS: SECRET }, timeout: 30_000 },
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, out: stdout, err: stderr }),
      );
    });
  });
  expect(result.err).toBe('');
  expect(result.code).toBe(0);
  return result.out.trim();
}

describe('signed mode with curl and edgepipe sign', () => {
  it('moves a file through URLs printed by `edgepipe sign`, and refuses them swapped', async () => {
    const server = await start([], {
      EDGEPIPE_CONFIG: config({ auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
    });
    const send = await sign(['/e2e/signed.bin', '--send', '--ttl', '5m'], server.url);
    const recv = await sign(['/e2e/signed.bin', '--recv', '--ttl', '5m'], server.url);
    const swapped = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', send]);
    expect(swapped.stdout.toString()).toBe('403');
    const body = randomBytes(3 * 1024 * 1024);
    const receiving = run('curl', ['-sSf', recv]);
    const sending = run('curl', ['-sSf', '-T', '-', send], { input: body });
    const [received, sent] = await Promise.all([receiving, sending]);
    expect(sent.code).toBe(0);
    expect(received.code).toBe(0);
    expect(sha256(received.stdout)).toBe(sha256(body));
    const unsigned = await run('curl', ['-sS', '-T', '-', `${server.url}/e2e/signed.bin`], { input: 'x' });
    expect(unsigned.stdout.toString()).toMatch(/^\[ERROR\] This server only serves signed URLs/);
  });
});

function config(value: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'edgepipe-access-')), 'config.json');
  writeFileSync(file, JSON.stringify(value));
  return file;
}

describe('HTTPS', () => {
  it('serves HTTPS with --tls-cert and --tls-key; curl moves a file byte-exact', async () => {
    const { cert, key } = await selfSignedCert();
    const server = await start(['--tls-cert', cert, '--tls-key', key]);
    expect(server.url.startsWith('https://127.0.0.1:')).toBe(true);
    const body = randomBytes(2 * 1024 * 1024);
    const receiving = run('curl', ['-sSf', '--cacert', cert, `${server.url}/tls/file`]);
    const sending = run('curl', ['-sSf', '--cacert', cert, '-T', '-', `${server.url}/tls/file`], {
      input: body,
    });
    const [received, sent] = await Promise.all([receiving, sending]);
    expect(sent.code).toBe(0);
    expect(sha256(received.stdout)).toBe(sha256(body));
    // Plain HTTP on the TLS port is not served.
    const plain = await run('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      server.url.replace('https', 'http'),
    ]);
    expect(plain.stdout.toString()).not.toBe('200');
  });

  it('refuses to start with only one of the two flags, or an unreadable file', async () => {
    const one = await edgepipe(['serve', '--port', '0', '--host', '127.0.0.1', '--tls-cert', '/nonexistent']);
    expect(one.code).toBe(2);
    expect(one.stderr).toContain('give both --tls-cert and --tls-key');
    const missing = await edgepipe([
      'serve',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--tls-cert',
      '/nonexistent/cert.pem',
      '--tls-key',
      '/nonexistent/key.pem',
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('server.tls.cert: cannot read /nonexistent/cert.pem');
  });
});

describe('start-up warning', () => {
  it('warns when open mode listens beyond loopback, not on loopback', async () => {
    const local = await start([]);
    expect(local.output()).not.toContain('auth.mode is open');
    // Bound to every interface only to read the warning; no traffic goes to it.
    const exposed = await new Promise<string>((resolve) => {
      import('node:child_process').then(({ spawn }) => {
        const child = spawn(process.execPath, [
          join(repoRoot, 'dist/cli/main.js'),
          'serve',
          '--host',
          '0.0.0.0',
          '--port',
          '0',
        ]);
        let output = '';
        const done = () => {
          child.kill('SIGKILL');
          resolve(output);
        };
        child.stdout.on('data', (d) => {
          output += d;
        });
        child.stderr.on('data', (d) => {
          output += d;
          if (output.includes('auth.mode')) done();
        });
        setTimeout(done, 10_000);
      });
    });
    expect(exposed).toContain('warning: auth.mode is open');
  });
});
