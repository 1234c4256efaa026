import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunResult, repoRoot, run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startSshd, type TestSshd } from './helpers/sshd.js';
import { spawnTunnel, type TunnelProcess } from './helpers/tunnel-processes.js';

const MiB = 1024 * 1024;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * The pids of `connect` processes for `brokerUrl` (ssh's ProxyCommands), read from /proc: ssh starts them, so
 * the test knows them only by their command line, which holds this test's own broker port.
 */
function proxyCommandPids(brokerUrl: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (args.includes('connect') && args.includes(brokerUrl)) pids.push(Number(entry));
  }
  return pids;
}

/** Issue 13's requirement: ssh through `connect --stdio` as its ProxyCommand, to an sshd behind `expose`. */
describe('ssh through a tunnel', () => {
  // The files sshd's session reads: sshd runs on this machine as this user, so a local file is a remote one.
  const temp = mkdtempSync(join(tmpdir(), 'tunnel-ssh-'));
  let broker: ServerProcess;
  let sshd: TestSshd;
  const tunnels: TunnelProcess[] = [];

  beforeAll(async () => {
    [broker, sshd] = await Promise.all([spawnServer(), startSshd()]);
  });
  afterAll(async () => {
    // A ProxyCommand outlives an ssh killed by a timeout (SIGKILL: no SIGHUP for it from ssh).
    for (const pid of broker ? proxyCommandPids(broker.url) : []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const tunnel of tunnels) tunnel.kill();
    broker?.kill();
    await sshd?.close();
    rmSync(temp, { recursive: true, force: true });
  });

  /** Starts `expose <name>` towards the sshd; resolves once its control slots wait. */
  async function exposeSshd(name: string, extra: readonly string[] = [], env = {}): Promise<TunnelProcess> {
    const tunnel = spawnTunnel(
      ['expose', name, '--server', broker.url, '--to', `127.0.0.1:${sshd.port}`, ...extra],
      env,
    );
    tunnels.push(tunnel);
    // The passphrase's key derivation takes seconds on a busy 2-core machine before any slot waits.
    await tunnel.waitFor(/exposing .* as /, 30_000);
    return tunnel;
  }

  /**
   * Runs `ssh ... <user>@tunnelled-host <command>` with `connect <name> --stdio` as its ProxyCommand. The host
   * name resolves nowhere: the only way to sshd is the tunnel. ssh runs the ProxyCommand with `$SHELL -c`
   * and hands it its environment, hence `env` for EDGEPIPE_PASSPHRASE.
   */
  function sshThrough(
    name: string,
    command: string,
    options: {
      input?: Uint8Array | string;
      env?: NodeJS.ProcessEnv;
      extra?: readonly string[];
      timeoutMs?: number;
    } = {},
  ): Promise<RunResult> {
    const proxy = [
      `'${process.execPath}'`,
      `'${join(repoRoot, 'dist/cli/main.js')}'`,
      'connect',
      name,
      '--server',
      broker.url,
      '--stdio',
      ...(options.extra ?? []),
    ].join(' ');
    return run(
      'ssh',
      [...sshd.sshArgs(['-o', `ProxyCommand=${proxy}`]), `${sshd.user}@tunnelled-host`, command],
      {
        ...(options.input !== undefined && { input: options.input }),
        ...(options.env && { env: options.env }),
        timeoutMs: options.timeoutMs ?? 60_000,
      },
    );
  }

  /**
   * Resolves with how the exposing side ended the connections it opened since `from` (a log length), once every
   * one has ended. A clean ssh session ends as `closed: both sides closed`: ssh's last bytes (its disconnect)
   * reached sshd and each side saw the other's FIN, rather than sshd being reset.
   */
  async function endsSince(tunnel: TunnelProcess, from: number): Promise<string[]> {
    const opened = (log: string) => log.match(/connection \w+ open /g)?.length ?? 0;
    const ends = (log: string) => log.match(/connection \w+ (?:closed|reset|refused|failed): .*/g) ?? [];
    for (let waited = 0; waited < 10_000; waited += 25) {
      const log = tunnel.log().slice(from);
      if (opened(log) > 0 && ends(log).length === opened(log)) return ends(log);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(
      `the exposing side did not end its connections within 10 s:\n${tunnel.log().slice(from)}`,
    );
  }
  const cleanClose = /^connection \w+ closed: both sides closed/;

  /** What a failed run should show: ssh's stderr, the expose log and sshd's. */
  const diagnosis = (result: RunResult, tunnel: TunnelProcess) =>
    `ssh exit ${result.code ?? result.signal}\nssh stderr:\n${result.stderr}\nexpose log:\n${tunnel.log()}\nsshd:\n${sshd.output()}`;

  it('carries 100 MiB of random bytes back from the remote command byte-exact', {
    timeout: 150_000,
  }, async () => {
    const tunnel = await exposeSshd('ssh1');
    const from = tunnel.log().length;
    const file = join(temp, 'random-100MiB');
    const body = randomBytes(100 * MiB);
    writeFileSync(file, body);

    const started = performance.now();
    const result = await sshThrough('ssh1', `cat '${file}'`, { timeoutMs: 120_000 });
    const seconds = (performance.now() - started) / 1000;

    expect(result.code, diagnosis(result, tunnel)).toBe(0);
    expect(result.stdout.length, diagnosis(result, tunnel)).toBe(body.length);
    expect(sha256(result.stdout)).toBe(sha256(body));
    expect(await endsSince(tunnel, from)).toEqual([expect.stringMatching(cleanClose)]);
    console.log(
      `ssh through the tunnel: 100 MiB in ${seconds.toFixed(1)} s, ${(100 / seconds).toFixed(1)} MiB/s (session setup included)`,
    );
  });

  it('carries 20 MiB of stdin to the remote command byte-exact', { timeout: 90_000 }, async () => {
    const tunnel = await exposeSshd('ssh3');
    const from = tunnel.log().length;
    const body = randomBytes(20 * MiB);

    const started = performance.now();
    const result = await sshThrough('ssh3', 'sha256sum', { input: body, timeoutMs: 60_000 });
    const seconds = (performance.now() - started) / 1000;

    expect(result.code, diagnosis(result, tunnel)).toBe(0);
    expect(result.stdout.toString()).toBe(`${sha256(body)}  -\n`);
    expect(await endsSince(tunnel, from)).toEqual([expect.stringMatching(cleanClose)]);
    console.log(
      `ssh stdin through the tunnel: 20 MiB in ${seconds.toFixed(1)} s, ${(20 / seconds).toFixed(1)} MiB/s`,
    );
  });

  describe('with --passphrase on both sides', () => {
    const env = { EDGEPIPE_PASSPHRASE: 'correct horse battery staple, tunnelled' };
    let tunnel: TunnelProcess;
    beforeAll(async () => {
      tunnel = await exposeSshd('ssh2', ['--passphrase'], env);
    }, 60_000);

    it('carries 10 MiB back byte-exact', { timeout: 90_000 }, async () => {
      const from = tunnel.log().length;
      const file = join(temp, 'random-10MiB');
      const body = randomBytes(10 * MiB);
      writeFileSync(file, body);

      const started = performance.now();
      const result = await sshThrough('ssh2', `cat '${file}'`, { env, extra: ['--passphrase'] });
      const seconds = (performance.now() - started) / 1000;

      expect(result.code, diagnosis(result, tunnel)).toBe(0);
      expect(result.stdout.length, diagnosis(result, tunnel)).toBe(body.length);
      expect(sha256(result.stdout)).toBe(sha256(body));
      expect(await endsSince(tunnel, from)).toEqual([expect.stringMatching(cleanClose)]);
      console.log(
        `ssh through the encrypted tunnel: 10 MiB in ${seconds.toFixed(1)} s (passphrase key derivation included)`,
      );
    });

    it('answers a line read from stdin', { timeout: 60_000 }, async () => {
      const from = tunnel.log().length;
      const result = await sshThrough('ssh2', 'read line; echo got:$line', {
        input: 'hello\n',
        env,
        extra: ['--passphrase'],
      });
      expect(result.code, diagnosis(result, tunnel)).toBe(0);
      expect(result.stdout.toString()).toBe('got:hello\n');
      expect(await endsSince(tunnel, from)).toEqual([expect.stringMatching(cleanClose)]);
    });

    it('is refused with another passphrase (ssh exits 255, no output)', { timeout: 60_000 }, async () => {
      const from = tunnel.log().length;
      const result = await sshThrough('ssh2', 'echo should-not-run', {
        env: { EDGEPIPE_PASSPHRASE: 'a different passphrase' },
        extra: ['--passphrase'],
        timeoutMs: 45_000,
      });
      expect(result.code, diagnosis(result, tunnel)).toBe(255);
      expect(result.stdout.toString()).toBe('');
      // The connecting side, whose stderr ssh shows, names the cause; the exposing side names it too, or,
      // when the connecting side noticed first and dropped its pipes, says so.
      expect(result.stderr).toMatch(/does not verify: another passphrase or key/);
      expect(await endsSince(tunnel, from)).toEqual([
        expect.stringMatching(/failed: .*(does not verify|every receiver left)/),
      ]);
    });
  });

  it('leaves no ProxyCommand behind once the sessions are over', async () => {
    // Each ends by itself once its connection has closed, or at the latest 5 s after ssh's SIGHUP.
    for (let waited = 0; waited < 10_000 && proxyCommandPids(broker.url).length > 0; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(proxyCommandPids(broker.url)).toEqual([]);
  });
});
