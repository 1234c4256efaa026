// @ts-check
// piping-server (nwtgck/piping-server), the protocol's origin, installed from npm into bench/.work (gitignored,
// not a dependency of the project) and started as a child process. Shared by the bench, which measures it
// beside edgepipe, and by tests, which use it as the reference server a client must work against.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The piping-server release the bench and the tests run. */
export const PIPING_SERVER_VERSION = '1.12.9';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where the bench and the tests install piping-server by default (gitignored). */
export const DEFAULT_WORK_DIR = join(root, 'bench', '.work');

const INSTALL_TIMEOUT_MS = 120_000;
/** Another process installing longer than this is taken for dead and its lock removed. */
const STALE_LOCK_MS = INSTALL_TIMEOUT_MS + 30_000;
const START_TIMEOUT_MS = 30_000;
/** The tail of a child's output kept for error messages: enough for a stack trace, never unbounded. */
const OUTPUT_TAIL_CHARS = 8_192;
/** Tries on a new free port when the one picked was taken in between (piping-server cannot bind port 0). */
const START_ATTEMPTS = 3;

/** npm could not install piping-server: no network, no npm, or a broken registry. */
export class PipingServerInstallError extends Error {
  /** @readonly */
  code = 'PIPING_SERVER_INSTALL';
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'PipingServerInstallError';
  }
}

/** A piping-server process that did not come up (exited, or never answered `/version`). */
export class PipingServerStartError extends Error {
  /** @readonly */
  code = 'PIPING_SERVER_START';
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'PipingServerStartError';
  }
}

/**
 * @typedef {object} InstallOptions
 * @property {string} [workDir] npm prefix to install into (default bench/.work)
 * @property {Record<string, string>} [env] added to npm's environment (a test points npm at a dead registry)
 * @property {(line: string) => void} [log] told when an install starts (the bench prints it on stderr)
 */

/**
 * @param {string} text
 * @returns {string}
 */
const tail = (text) => (text.length > OUTPUT_TAIL_CHARS ? text.slice(-OUTPUT_TAIL_CHARS) : text);

/**
 * @param {string} workDir
 * @returns {string}
 */
function entryOf(workDir) {
  return join(workDir, 'node_modules', 'piping-server', 'dist', 'src', 'index.js');
}

/**
 * True when `workDir` holds exactly the pinned version (a different one left behind is reinstalled).
 * @param {string} workDir
 */
function installed(workDir) {
  try {
    const pkg = JSON.parse(
      readFileSync(join(workDir, 'node_modules', 'piping-server', 'package.json'), 'utf8'),
    );
    return pkg.version === PIPING_SERVER_VERSION && existsSync(entryOf(workDir));
  } catch {
    return false;
  }
}

/**
 * Runs `npm install` into `workDir`; rejects with what npm said when it fails or takes too long.
 * @param {string} workDir
 * @param {Record<string, string>} env
 * @returns {Promise<void>}
 */
async function npmInstall(workDir, env) {
  const spec = `piping-server@${PIPING_SERVER_VERSION}`;
  const child = spawn('npm', ['install', '--prefix', workDir, '--no-save', '--no-audit', '--no-fund', spec], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (/** @type {string} */ data) => {
    stderr = tail(stderr + data);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), INSTALL_TIMEOUT_MS);
  try {
    /** @type {[number | null, NodeJS.Signals | null]} */
    const [code, signal] = await new Promise((resolve, reject) => {
      child.once('error', (error) =>
        reject(new PipingServerInstallError(`could not run npm to install ${spec}: ${error.message}`)),
      );
      child.once('exit', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
    });
    if (code === 0) return;
    const how = signal
      ? `was killed (${signal}) after ${INSTALL_TIMEOUT_MS / 1000} s`
      : `exited with ${code}`;
    throw new PipingServerInstallError(
      `npm install ${spec} into ${workDir} ${how}; tests and the bench need it once per checkout, from the npm registry ` +
        `(no network here?). npm said:\n${stderr.trim() || '(nothing)'}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Installs piping-server into `workDir` (bench/.work) unless it is there already, and returns its entry file.
 * Concurrent callers (vitest runs test files in parallel) wait on one lock directory, so that only one npm
 * writes into the prefix. Never resolves without a usable entry: on failure it throws
 * `PipingServerInstallError` carrying npm's own message.
 * @param {InstallOptions} [options]
 * @returns {Promise<string>}
 */
export async function installPipingServer(options = {}) {
  const workDir = options.workDir ?? DEFAULT_WORK_DIR;
  if (installed(workDir)) return entryOf(workDir);
  mkdirSync(workDir, { recursive: true });
  const lock = join(workDir, '.install-lock');
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code !== 'EEXIST') throw error;
    }
    // Someone else installs: wait for them, or take over a lock its owner left behind when it died.
    await new Promise((resolve) => setTimeout(resolve, 250));
    if (installed(workDir)) return entryOf(workDir);
    try {
      if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) rmSync(lock, { recursive: true, force: true });
    } catch {
      // The lock went away between the checks: try to take it again.
    }
  }
  try {
    if (installed(workDir)) return entryOf(workDir);
    options.log?.(`installing piping-server@${PIPING_SERVER_VERSION} into ${workDir}...`);
    await npmInstall(workDir, options.env ?? {});
    if (!installed(workDir))
      throw new PipingServerInstallError(`npm reported success but ${entryOf(workDir)} is missing`);
    return entryOf(workDir);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** A port nobody listens on right now (piping-server cannot be asked for port 0 and report it). */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * @typedef {object} RunningPipingServer
 * @property {import('node:child_process').ChildProcess} child
 * @property {number} pid
 * @property {string} url `http://127.0.0.1:<port>`
 * @property {() => string} output the tail of what it printed
 * @property {() => Promise<void>} kill SIGKILLs its process group; resolves once the process is gone
 */

/** Every piping-server this process started and has not killed: killed when this process exits. */
const running = new Set();
process.once('exit', () => {
  for (const kill of running) kill();
});

/**
 * @param {string} url
 * @returns {Promise<boolean>}
 */
async function answersVersion(url) {
  try {
    const response = await fetch(`${url}/version`, { signal: AbortSignal.timeout(1_000) });
    const body = await response.text();
    return response.ok && body.trim() === PIPING_SERVER_VERSION;
  } catch {
    return false;
  }
}

/**
 * One attempt: spawns piping-server on `port` and waits until `/version` answers with the pinned version.
 * @param {string} entry
 * @param {number} port
 * @returns {Promise<RunningPipingServer>}
 */
async function spawnOn(entry, port) {
  const child = spawn(process.execPath, [entry, '--host', '127.0.0.1', '--http-port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // A group of its own, so that kill() reaches anything it starts.
    detached: true,
  });
  let output = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (/** @type {string} */ data) => {
      output = tail(output + data);
    });
  }
  /** @type {Promise<void>} */
  const exited = new Promise((resolve) => child.once('exit', () => resolve()));
  // Spawning node itself does not fail in practice; if it did, the exit check below reports it.
  child.on('error', (error) => {
    output = tail(`${output}${error.message}\n`);
  });
  const killNow = () => {
    try {
      process.kill(-(/** @type {number} */ (child.pid)), 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  };
  running.add(killNow);
  const kill = async () => {
    running.delete(killNow);
    if (child.exitCode === null && child.signalCode === null) killNow();
    await exited;
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      running.delete(killNow);
      throw new PipingServerStartError(
        `piping-server on port ${port} exited with ${child.exitCode ?? child.signalCode}:\n${output}`,
      );
    }
    if (await answersVersion(url)) break;
    if (Date.now() > deadline) {
      await kill();
      throw new PipingServerStartError(
        `piping-server on port ${port} did not answer /version within ${START_TIMEOUT_MS} ms:\n${output}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, pid: /** @type {number} */ (child.pid), url, output: () => output, kill };
}

/**
 * Starts piping-server (from `installPipingServer()`'s entry) on 127.0.0.1 and a free port; resolves once it
 * answers `GET /version` with the pinned version. A port taken between picking and binding costs a retry on
 * another port.
 * @param {{ entry?: string }} [options] the entry file (installed now if not given)
 * @returns {Promise<RunningPipingServer>}
 */
export async function startPipingServer(options = {}) {
  const entry = options.entry ?? (await installPipingServer());
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnOn(entry, await freePort());
    } catch (error) {
      if (attempt >= START_ATTEMPTS || !(error instanceof PipingServerStartError)) throw error;
    }
  }
}
