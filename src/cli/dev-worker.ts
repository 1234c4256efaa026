// `npm run dev:worker`: the Worker on workerd (offline) with the environment the other runtimes read, so one
// config reaches a Worker in development too. REDIS_URL, EDGEPIPE_CONFIG, EDGEPIPE_SECRETS and
// EDGEPIPE_ADMIN_TOKEN are passed as vars when set (a Worker has no files: a config file is passed as its
// contents), HOST and PORT choose the address. The config is checked before workerd starts: a bad one is one
// line and exit 2, not a 500 on every request.
//
// It serves wrangler's bundle of the Worker on workerd with nothing in front and the DevTools inspector off
// (local-workerd.ts says what wrangler dev's own proxy cost; with the inspector on, every chunk of a response
// from a Durable Object to the Worker became an inspector event, which held pipes to ~3 MiB/s, issue 16).
// `--test-scheduled` serves `/cdn-cgi/handler/scheduled`, which runs the cron handler; `--log-requests`
// prints a line per request (off by default: each costs workerd a request to this process, local-workerd.ts);
// with any other argument this runs `wrangler dev` itself with them (its proxy and inspector on, for
// debugging).
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExitCode, exitFor } from './exit-codes.js';
import { loadConfig, readConfigValue } from './load-config.js';
import { serveWorker, wranglerBin } from './local-workerd.js';

/** The variables a Worker reads, forwarded to it when set. */
const FORWARDED_VARS = ['REDIS_URL', 'EDGEPIPE_CONFIG', 'EDGEPIPE_SECRETS', 'EDGEPIPE_ADMIN_TOKEN'] as const;

/** The arguments this command handles itself; any other goes to `wrangler dev`. */
const OWN_ARGS = new Set(['--test-scheduled', '--log-requests']);

/** The repository's wrangler.toml (this file runs from dist/cli/). */
const WRANGLER_TOML = join(dirname(fileURLToPath(import.meta.url)), '../../wrangler.toml');

/**
 * The Worker's vars from `env`.
 * @throws ConfigError when EDGEPIPE_CONFIG cannot be read or the config is invalid.
 */
function workerVars(env: Record<string, string | undefined>): Record<string, string> {
  loadConfig({}, env);
  const vars: Record<string, string> = {};
  for (const name of FORWARDED_VARS) {
    const value = env[name];
    if (value) vars[name] = name === 'EDGEPIPE_CONFIG' ? JSON.stringify(readConfigValue(value)) : value;
  }
  return vars;
}

/**
 * wrangler dev wraps the Worker in a middleware that reads whatever request body is unread once the handler
 * has returned its Response (templates/middleware/middleware-ensure-req-body-drained.ts). A sender's
 * transcript is returned while the upload is still being read, locked to the transfer's reader, so it logged
 * "Failed to drain the unused request body ... locked" for every PUT; deployed Workers have no such middleware.
 * The Worker reads the unread body of a request it refuses itself, within bounds (drain-refused-body.ts).
 */
const NO_DRAINING = { WRANGLER_DISABLE_REQUEST_BODY_DRAINING: 'true' };

/** `wrangler dev` itself, as a child, for arguments this command does not handle. */
function wranglerDev(vars: Record<string, string>, host: string, port: string, extra: string[]): void {
  const args = ['dev', '--ip', host, '--port', port];
  // wrangler splits `--var` at the first colon only, so JSON and URLs pass whole.
  for (const [name, value] of Object.entries(vars)) args.push('--var', `${name}:${value}`);
  const child = spawn(process.execPath, [wranglerBin(), ...args, ...extra], {
    stdio: 'inherit',
    env: { ...process.env, ...NO_DRAINING },
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  // Ended by a signal: exit as a shell reports it (128 + its number).
  child.on('exit', (code, signal) =>
    process.exit(code ?? (signal ? 128 + constants.signals[signal] : ExitCode.internal)),
  );
}

/** The Worker on workerd with nothing in front (local-workerd.ts), which prints `Ready on <url>`. */
async function startWorker(vars: Record<string, string>, host: string, port: string, own: readonly string[]) {
  const worker = await serveWorker({
    config: WRANGLER_TOML,
    vars,
    host,
    port: Number(port),
    triggerHandlers: own.includes('--test-scheduled'),
    logRequests: own.includes('--log-requests'),
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      void worker.dispose().finally(() => process.exit(128 + constants.signals[signal]));
    });
  }
}

function main(): void {
  let vars: Record<string, string>;
  try {
    vars = workerVars(process.env);
  } catch (error) {
    const { line, code } = exitFor(error);
    console.error(line);
    process.exit(code);
  }
  const host = process.env.HOST || '127.0.0.1';
  const port = process.env.PORT || '8787';
  const extra = process.argv.slice(2);
  if (extra.some((arg) => !OWN_ARGS.has(arg))) {
    wranglerDev(vars, host, port, extra);
    return;
  }
  startWorker(vars, host, port, extra).catch((error: unknown) => {
    console.error(`edgepipe: wrangler could not start the Worker: ${(error as Error).message}`);
    process.exit(ExitCode.internal);
  });
}

main();
