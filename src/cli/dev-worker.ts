// `npm run dev:worker`: the Worker under wrangler's local runtime (workerd, offline) with the environment the
// other runtimes read, so one config reaches a Worker in development too. REDIS_URL, EDGEPIPE_CONFIG,
// EDGEPIPE_SECRETS and EDGEPIPE_ADMIN_TOKEN are passed as vars when set (a Worker has no files: a config file
// is passed as its contents), HOST and PORT choose the address. The config is checked before wrangler starts:
// a bad one is one line and exit 2, not a 500 on every request.
//
// It starts the Worker through wrangler's API with the DevTools inspector off: with it on (as `wrangler dev`
// always has it) every chunk of a response from a Durable Object to the Worker becomes an inspector event,
// which held pipes to ~3 MiB/s and ran wrangler out of memory (issue 16). `--test-scheduled` serves
// `/__scheduled` as `wrangler dev --test-scheduled` does; with any other argument this runs `wrangler dev`
// itself with them (inspector on, for debugging).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExitCode, exitFor } from './exit-codes.js';
import { loadConfig, readConfigValue } from './load-config.js';

/** The variables a Worker reads, forwarded to it when set. */
const FORWARDED_VARS = ['REDIS_URL', 'EDGEPIPE_CONFIG', 'EDGEPIPE_SECRETS', 'EDGEPIPE_ADMIN_TOKEN'] as const;

/** The arguments this command handles itself; any other goes to `wrangler dev`. */
const OWN_ARGS = new Set(['--test-scheduled']);

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
  const wrangler = join(
    dirname(createRequire(import.meta.url).resolve('wrangler/package.json')),
    'bin/wrangler.js',
  );
  const child = spawn(process.execPath, [wrangler, ...args, ...extra], {
    stdio: 'inherit',
    env: { ...process.env, ...NO_DRAINING },
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  // Ended by a signal: exit as a shell reports it (128 + its number).
  child.on('exit', (code, signal) =>
    process.exit(code ?? (signal ? 128 + constants.signals[signal] : ExitCode.internal)),
  );
}

/**
 * wrangler watches wrangler.toml even with `watch: false`, and reloads the Worker when the file's mtime
 * changes (a `touch` does): every open pipe is cut, and a request in flight gets wrangler's 503 "Your worker
 * restarted mid-request". This command builds once and runs what it built, as `watch: false` says.
 */
const NO_CONFIG_WATCH = { WRANGLER_CI_DISABLE_CONFIG_WATCHING: 'true' };

/** The Worker through wrangler's API, inspector off; wrangler logs `Ready on <url>` and every request. */
async function startWorker(vars: Record<string, string>, host: string, port: string, testScheduled: boolean) {
  Object.assign(process.env, NO_DRAINING, NO_CONFIG_WATCH);
  const { unstable_startWorker } = await import('wrangler');
  const worker = await unstable_startWorker({
    config: WRANGLER_TOML,
    // What `wrangler dev` derives from wrangler.toml's nodejs_compat flag (ioredis needs node:net).
    build: { nodejsCompatMode: 'v2' },
    bindings: Object.fromEntries(
      Object.entries(vars).map(([name, value]) => [name, { type: 'plain_text' as const, value }]),
    ),
    dev: {
      inspector: false,
      remote: false,
      watch: false,
      persist: false,
      testScheduled,
      server: { hostname: host, port: Number(port) },
    },
  });
  await worker.ready;
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
  startWorker(vars, host, port, extra.includes('--test-scheduled')).catch((error: unknown) => {
    console.error(`edgepipe: wrangler could not start the Worker: ${(error as Error).message}`);
    process.exit(ExitCode.internal);
  });
}

main();
