import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { run } from './processes.js';
import { freePort } from './redis-server.js';

/** Where Debian and Ubuntu install sshd (`.ci/run` installs openssh-server); not on every PATH. */
export const SSHD_PATH = '/usr/sbin/sshd';

/**
 * The name the host key is filed under in `knownHostsPath`, besides `[127.0.0.1]:<port>`. `sshArgs()` passes it
 * as HostKeyAlias, so `ssh -o ProxyCommand=... user@any-name` checks the key without `any-name` resolving.
 */
export const SSHD_HOST_KEY_ALIAS = 'edgepipe-test-sshd';

/** An OpenSSH server of the test's own on 127.0.0.1, letting in only the current user with one throwaway key. */
export interface TestSshd {
  readonly port: number;
  /** The user running the tests (root on CI): the only one sshd lets in. */
  readonly user: string;
  /** The ed25519 private key sshd accepts (no passphrase). */
  readonly clientKeyPath: string;
  /** A known_hosts with the host key as `[127.0.0.1]:<port>` and as `SSHD_HOST_KEY_ALIAS`. */
  readonly knownHostsPath: string;
  /** The temp dir holding keys, config and pid file; `close()` removes it. */
  readonly dir: string;
  /**
   * The ssh options to put before `user@host 'command'`. `extra` comes first because ssh keeps the first value
   * it gets for an option, so a test's `-o X=...` wins. `-i` adds rather than replaces, hence `identityFile`.
   */
  sshArgs(extra?: readonly string[], identityFile?: string): string[];
  /** What sshd logged (`-e`: connections, authentications, errors), the last 64 KiB. */
  output(): string;
  /** SIGKILLs sshd and every session it started, then removes the temp dir. */
  close(): Promise<void>;
}

const OUTPUT_LIMIT = 64 * 1024;

async function keygen(path: string, comment: string): Promise<void> {
  const made = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  if (made.code !== 0) throw new Error(`ssh-keygen failed: ${made.stderr}`);
}

/**
 * Whether sshd would refuse `user` as locked: without PAM it refuses an account whose shadow password starts with
 * `!` (Ubuntu's root; systemd's synthesized root and nobody, `!*`) even for a key. `getent` looks the entry up
 * through NSS as sshd does, so it sees what sshd sees: nothing from /etc/shadow unless running as root.
 */
async function passwordLocked(user: string): Promise<boolean> {
  const entry = await run('getent', ['shadow', user]).catch(() => undefined);
  return entry?.code === 0 && (entry.stdout.toString().split(':')[1]?.startsWith('!') ?? false);
}

function sshdConfig(dir: string, port: number, user: string, usePam: boolean): string {
  return [
    '# Written by test/helpers/sshd.ts for one test: nothing here is read from /etc/ssh.',
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey "${join(dir, 'host_key')}"`,
    `AuthorizedKeysFile "${join(dir, 'authorized_keys')}"`,
    `PidFile "${join(dir, 'sshd.pid')}"`,
    // Without PAM sshd checks keys and shells itself and runs none of the machine's PAM session modules; but then
    // it refuses a locked account, which PAM's account check lets in (password and keyboard logins stay off).
    `UsePAM ${usePam ? 'yes' : 'no'}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'AuthenticationMethods publickey',
    // The keys live under /tmp, which is world-writable: StrictModes would refuse authorized_keys there.
    'StrictModes no',
    // Tests may run as root (CI does): let root in, with a key only.
    'PermitRootLogin prohibit-password',
    `AllowUsers ${user}`,
    // No motd, no lastlog read or written: a test's session touches nothing of the machine's.
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    // scp speaks SFTP since OpenSSH 9.0; in-process, so no sftp-server path to know.
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/**
 * `sshd -t` as a check before the start, so a bad config fails with sshd's words. Running as root sshd chroots
 * its pre-auth child into a compiled-in empty dir (/run/sshd on Debian), which only the openssh-server service
 * creates at boot: when sshd names it missing, make it (root-owned, 0755, as the service does) and check again.
 */
async function checkConfig(config: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const checked = await run(SSHD_PATH, ['-t', '-f', config]).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT')
        throw new Error(`${SSHD_PATH} not found: install openssh-server (.ci/run does)`);
      throw error;
    });
    if (checked.code === 0) return;
    const privsep = /Missing privilege separation directory: (\S+)/.exec(checked.stderr);
    if (!privsep || attempt > 1) throw new Error(`sshd -t rejected the test config:\n${checked.stderr}`);
    mkdirSync(privsep[1]!, { recursive: true, mode: 0o755 });
  }
}

/** Resolves once a connection to the port reads sshd's `SSH-2.0-...` banner; rejects if sshd exits first. */
async function waitForBanner(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`sshd on ${port} exited with ${child.exitCode ?? child.signalCode}:\n${output()}`);
    }
    const banner = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let read = '';
      const done = (ok: boolean) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), 1_000);
      socket.on('data', (d) => {
        read += d;
        if (read.includes('SSH-2.0')) done(true);
      });
      socket.on('error', () => done(false));
      socket.on('close', () => done(false));
    });
    if (banner) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`sshd on ${port} sent no SSH-2.0 banner within 10 s:\n${output()}`);
}

/** Every process below `pid`, from /proc (sshd puts each connection in a session of its own, out of its group). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // Fields after the command name, which is in parentheses and may itself hold spaces or parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  const walk = (parent: number) => {
    for (const child of children.get(parent) ?? []) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/**
 * Starts `/usr/sbin/sshd -D -e` on 127.0.0.1 and a free port with a throwaway ed25519 host key, letting in the
 * current user with a throwaway ed25519 client key; resolves once it sends its banner. Fails (never skips) when
 * sshd is missing: the tunnel tests need it and `.ci/run` installs it.
 */
export async function startSshd(): Promise<TestSshd> {
  const dir = mkdtempSync(join(tmpdir(), 'edgepipe-sshd-'));
  const user = userInfo().username;
  const hostKey = join(dir, 'host_key');
  const clientKeyPath = join(dir, 'client_key');
  const knownHostsPath = join(dir, 'known_hosts');
  const config = join(dir, 'sshd_config');
  let child: ChildProcess | undefined;
  let log = '';
  const output = () => log;
  try {
    await Promise.all([
      keygen(hostKey, 'edgepipe-test-host'),
      keygen(clientKeyPath, `edgepipe-test-${user}`),
    ]);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKeyPath}.pub`));
    // `ssh-ed25519 AAAA... comment`: keep the type and key.
    const hostPublic = readFileSync(`${hostKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');

    const usePam = await passwordLocked(user);
    let port = 0;
    // The free port may be taken by another test file between the probe and sshd's bind: try other ones.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      writeFileSync(config, sshdConfig(dir, port, user, usePam));
      writeFileSync(
        knownHostsPath,
        `[127.0.0.1]:${port} ${hostPublic}\n${SSHD_HOST_KEY_ALIAS} ${hostPublic}\n`,
      );
      await checkConfig(config);
      log = '';
      // An absolute path: sshd re-executes itself for every connection and refuses to start without one.
      const started = spawn(SSHD_PATH, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = started;
      started.stderr!.on('data', (d) => {
        log = (log + d).slice(-OUTPUT_LIMIT);
      });
      try {
        await waitForBanner(port, started, output);
        break;
      } catch (error) {
        const busy = /Address already in use|Cannot bind any address/.test(log);
        if (!busy || attempt >= 5) throw error;
      }
    }

    const listener = child!;
    const exited = new Promise<void>((resolve) => {
      if (listener.exitCode !== null || listener.signalCode !== null) resolve();
      else listener.once('exit', () => resolve());
    });
    return {
      port,
      user,
      clientKeyPath,
      knownHostsPath,
      dir,
      sshArgs: (extra = [], identityFile = clientKeyPath) => [
        ...extra,
        // Nothing from ~/.ssh/config or /etc/ssh/ssh_config, no agent keys: only what is here.
        '-F',
        '/dev/null',
        '-p',
        String(port),
        '-i',
        identityFile,
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'IdentityAgent=none',
        '-o',
        'BatchMode=yes',
        '-o',
        `UserKnownHostsFile=${knownHostsPath}`,
        '-o',
        'GlobalKnownHostsFile=/dev/null',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `HostKeyAlias=${SSHD_HOST_KEY_ALIAS}`,
        // Keep known_hosts as written: no host key rotation written back by ssh.
        '-o',
        'UpdateHostKeys=no',
        // A bound, not a speed check: it counts the ProxyCommand's start, and `connect --passphrase` spends
        // scrypt's 256 MiB there first (1.5 s idle; a CI run in parallel with the suite hit 10 s).
        '-o',
        'ConnectTimeout=30',
      ],
      output,
      async close() {
        if (listener.exitCode === null && listener.signalCode === null) {
          // Sessions first, while they are still known as sshd's descendants (they outlive the listener).
          for (const pid of descendants(listener.pid!)) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          listener.kill('SIGKILL');
        }
        await exited;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
