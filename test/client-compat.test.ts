// The edgepipe client against servers and peers that are not it: piping-server 1.12.9 itself (installed
// from npm into bench/.work, as the bench does), and curl at the other end of an edgepipe client.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPipingServer, type TestPipingServer } from './helpers/piping-server.js';
import { type RunResult, repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const work = mkdtempSync(join(tmpdir(), 'edgepipe-compat-'));
const stateDir = join(work, 'state');

/** Runs `edgepipe <args>` to its end. */
function edgepipe(args: string[], input?: Uint8Array): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], {
    ...(input ? { input } : {}),
    env: { EDGEPIPE_STATE_DIR: stateDir },
    timeoutMs: 60_000,
  });
}

function fileOf(name: string, data: Uint8Array): string {
  const path = join(work, name);
  writeFileSync(path, data);
  return path;
}

describe.each([
  ['piping-server 1.12.9', 'piping'],
  ['edgepipe (in memory)', 'edgepipe'],
] as const)('the client against %s', (_name, kind) => {
  let url: string;
  let piping: TestPipingServer | undefined;
  let own: ServerProcess | undefined;
  beforeAll(async () => {
    if (kind === 'piping') {
      piping = await startTestPipingServer();
      url = piping.url;
    } else {
      own = await spawnServer();
      url = own.url;
    }
  }, 120_000);
  afterAll(() => {
    piping?.kill();
    own?.kill();
  });

  it('edgepipe send to edgepipe recv, byte-exact, with the same digest on both sides', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const input = fileOf(`a-${kind}.bin`, data);
    const output = join(work, `a-${kind}.out`);
    const receiving = edgepipe(['recv', `${url}/c/a`, output, '--sha256']);
    await delay(300);
    const sent = await edgepipe(['send', `${url}/c/a`, input, '--sha256']);
    const received = await receiving;
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(sha256(readFileSync(output))).toBe(sha256(data));
    expect(sent.stderr).toContain(`sha256 ${sha256(data)}`);
    expect(received.stderr).toContain(`sha256 ${sha256(data)}`);
  });

  it('curl -T sends, edgepipe recv receives (stdout), and the other way round', async () => {
    const data = randomBytes(2 * 1024 * 1024 + 3);
    const input = fileOf(`b-${kind}.bin`, data);
    const receiving = edgepipe(['recv', `${url}/c/b1`]);
    await delay(300);
    const curlSent = await run('curl', ['-sS', '-f', '-T', input, `${url}/c/b1`]);
    const received = await receiving;
    expect(curlSent.code, curlSent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(sha256(received.stdout)).toBe(sha256(data));

    const curlReceiving = run('curl', ['-sS', '-f', `${url}/c/b2`]);
    await delay(300);
    const sent = await edgepipe(['send', `${url}/c/b2`, '-'], data);
    const curlReceived = await curlReceiving;
    expect(sent.code, sent.stderr).toBe(0);
    expect(curlReceived.code, curlReceived.stderr).toBe(0);
    expect(sha256(curlReceived.stdout)).toBe(sha256(data));
  });

  it('says once that this server cannot resume', async () => {
    const receiving = edgepipe(['recv', `${url}/c/c`, '--progress', 'json']);
    await delay(300);
    const sent = await edgepipe(['send', `${url}/c/c`, '-', '--progress', 'json'], Buffer.from('hello'));
    const received = await receiving;
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.stdout.toString()).toBe('hello');
    const notices = (text: string) =>
      text.split('\n').filter((line) => /cannot resume|does not say it can resume/.test(line));
    expect(notices(sent.stderr)).toHaveLength(1);
    expect(notices(received.stderr)).toHaveLength(1);
  });

  it('-n 2: one sender, two receivers', async () => {
    const data = randomBytes(512 * 1024);
    const receivers = [
      edgepipe(['recv', `${url}/c/d`, '-n', '2']),
      edgepipe(['recv', `${url}/c/d`, '-n', '2']),
    ];
    await delay(400);
    const sent = await edgepipe(['send', `${url}/c/d`, '-', '-n', '2'], data);
    expect(sent.code, sent.stderr).toBe(0);
    for (const received of await Promise.all(receivers)) {
      expect(received.code, received.stderr).toBe(0);
      expect(sha256(received.stdout)).toBe(sha256(data));
    }
  });
});

describe('interrupted', () => {
  let own: ServerProcess;
  beforeAll(async () => {
    own = await spawnServer();
  });
  afterAll(() => own?.kill());

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('a receiver stopped by %s exits %i, as a shell reports it', async (signal, code) => {
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'dist/cli/main.js'), 'recv', `${own.url}/sig/${signal}`, '-q'],
      {
        env: { ...process.env, EDGEPIPE_STATE_DIR: stateDir },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    // Once its GET waits on the pipe, the client has its signal handlers (set before its first request).
    for (let i = 0; i < 200; i++) {
      const head = await fetch(`${own.url}/sig/${signal}`, { method: 'HEAD' });
      if (head.headers.get('x-edgepipe-state') === 'waiting') break;
      await delay(25);
    }
    child.kill(signal);
    const [exitCode] = await once(child, 'exit');
    expect(exitCode, stderr).toBe(code);
    expect(stderr).toContain('edgepipe: interrupted');
  });
});
