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

describe('a tunnel signed with `edgepipe sign --tunnel` (issue 13)', () => {
  /** `signed` with `below` appended to its path, its query kept: how the tunnel client names its pipes. */
  const pipeOf = (signed: string, below: string) => {
    const url = new URL(signed);
    url.pathname += below;
    return url.toString();
  };
  const status = async (url: string, args: string[] = []) =>
    (
      await run('curl', ['-sS', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', ...args, url])
    ).stdout.toString();

  it('one URL moves bytes both ways on every pipe below the namespace, and nothing outside it', async () => {
    const server = await start([], {
      EDGEPIPE_CONFIG: config({ auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
    });
    const signed = await sign(['/tun/abc', '--tunnel', '--ttl', '5m'], server.url);
    const query = new URL(signed).searchParams;
    expect(query.get('scope')).toBe('both');
    expect(query.get('prefix')).toBe('/tun/abc');
    // Each end sends on one pipe and receives on the other, with the same URL.
    for (const pipe of ['/ctl/0', '/c1/up', '/c1/down']) {
      const body = randomBytes(1024 * 1024);
      const receiving = run('curl', ['-sSf', pipeOf(signed, pipe)]);
      const sending = run('curl', ['-sSf', '-T', '-', pipeOf(signed, pipe)], { input: body });
      const [received, sent] = await Promise.all([receiving, sending]);
      expect(sent.code, pipe).toBe(0);
      expect(received.code, pipe).toBe(0);
      expect(sha256(received.stdout), pipe).toBe(sha256(body));
    }
    expect(await status(pipeOf(signed, '/c1/up'), ['-I'])).toBe('200');

    const origin = new URL(signed).origin;
    const search = new URL(signed).search;
    for (const outside of ['/tun/abc-other/x', '/tun/x', '/other/c1/up']) {
      expect(await status(`${origin}${outside}${search}`), outside).toBe('403');
      expect(await status(`${origin}${outside}${search}`, ['-T', '/dev/null']), outside).toBe('403');
    }
    for (const dots of ['/../x', '/%2e%2e/x', '/c1/../../x']) {
      // Built with URL, as a client would, the dot segments are resolved before sending: outside, 403.
      expect(await status(pipeOf(signed, dots)), dots).toBe('403');
      // Sent as spelled, they are refused before any access check.
      expect(await status(`${origin}/tun/abc${dots}${search}`), dots).toBe('400');
    }
    // The scope is signed: a send URL edited to both is refused, and a send URL still cannot receive.
    const send = await sign(['/tun/abc', '--send', '--prefix', '--ttl', '5m'], server.url);
    expect(await status(pipeOf(send, '/c1/up'))).toBe('403');
    expect(await status(pipeOf(send.replace('scope=send', 'scope=both'), '/c1/up'), ['-I'])).toBe('403');
    const edited = await run('curl', ['-sS', pipeOf(send.replace('scope=send', 'scope=both'), '/c1/up')]);
    expect(edited.stdout.toString()).toBe('[ERROR] The signature does not match this URL.\n');
  });

  it('`sign --n` with --tunnel, and sign without a scope, exit 2 with the reason; --help tells --tunnel', async () => {
    const env = { EDGEPIPE_SECRETS: SECRET };
    const cli = (args: string[]) =>
      run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), 'sign', ...args], {
        env,
        timeoutMs: 30_000,
      });
    const withN = await cli(['/tun/abc', '--tunnel', '--n', '2']);
    expect(withN.code).toBe(2);
    expect(withN.stderr).toContain("--n: not with --tunnel (a tunnel's pipes have one receiver each)");
    expect(withN.stdout.toString()).toBe('');
    const none = await cli(['/p']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('give --send, --recv, both of them, or --tunnel');
    const help = (await cli(['--help'])).stdout.toString().replace(/\s+/g, ' ');
    expect(help).toContain('--tunnel');
    expect(help).toContain('short for --send --recv --prefix');
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

describe('/help in signed and token mode (issue 11)', () => {
  const TOKEN = 'e2e-token-e2e-token-e2e-token';

  /** The line after the one that starts with `heading` in `/help`. */
  function lineAfter(help: string, heading: string): string {
    const lines = help.split('\n');
    const at = lines.findIndex((line) => line.startsWith(heading));
    expect(at, `no '${heading}' in:\n${help}`).toBeGreaterThanOrEqual(0);
    return lines[at + 1]!;
  }

  /**
   * Runs what `/help` tells a user, in bash from a checkout: its set-up lines, then its receive command in
   * the background and its "Send a text" command. Returns what the receiver printed.
   */
  async function followHelp(help: string, setup: string[], env: NodeJS.ProcessEnv): Promise<string> {
    const script = [
      'set -e',
      // What `npx edgepipe` runs in a checkout, without npx's start-up (seconds, and it may ask the registry).
      `npx() { [ "$1" = edgepipe ] && shift && '${join(repoRoot, 'bin/edgepipe.js')}' "$@"; }`,
      ...setup,
      `${lineAfter(help, '======= Receive =======')} > "$OUT" &`,
      'sleep 0.3',
      `${lineAfter(help, '# Send a text')} > /dev/null`,
      'wait',
      'cat "$OUT"',
    ].join('\n');
    const out = join(mkdtempSync(join(tmpdir(), 'edgepipe-help-')), 'received');
    const result = await run('bash', ['-c', script], { env: { ...env, OUT: out }, timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(0);
    return result.stdout.toString();
  }

  it('signed: the commands get URLs from `npx edgepipe sign` first, and they work as written', async () => {
    const server = await start([], {
      EDGEPIPE_CONFIG: config({ auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
    });
    const help = await (await fetch(`${server.url}/help`)).text();
    expect(help).not.toContain(`curl ${server.url}/mypath`);
    const setup = help.split('\n').filter((line) => /^(SEND|RECV)_URL=/.test(line));
    expect(setup).toEqual([
      `SEND_URL=$(npx edgepipe sign /mypath --send --url ${server.url})`,
      `RECV_URL=$(npx edgepipe sign /mypath --recv --url ${server.url})`,
    ]);
    expect(await followHelp(help, setup, { EDGEPIPE_SECRETS: SECRET })).toBe('hello!\n');
  });

  it('token: every command carries the bearer token, and they work as written', async () => {
    const server = await start([], {
      EDGEPIPE_CONFIG: config({
        auth: { mode: 'token', tokens: [{ name: 'e2e', token: TOKEN, scopes: ['send', 'recv'] }] },
      }),
    });
    const help = await (await fetch(`${server.url}/help`)).text();
    for (const line of help.split('\n').filter((line) => line.includes('curl '))) {
      expect(line).toContain('curl -H "Authorization: Bearer $EDGEPIPE_TOKEN"');
    }
    expect(help).toContain("export EDGEPIPE_TOKEN='<your token>'");
    expect(await followHelp(help, [`export EDGEPIPE_TOKEN='${TOKEN}'`], {})).toBe('hello!\n');
  });
});
