// `npm run dev:worker`: `wrangler dev` with the environment the other runtimes read, so one config reaches
// a Worker in development too. REDIS_URL, EDGEPIPE_CONFIG, EDGEPIPE_SECRETS and EDGEPIPE_ADMIN_TOKEN are
// forwarded as `--var`s when set (a Worker has no files: a config file is passed as its contents), HOST and
// PORT choose the address, and further arguments go to wrangler (`npm run dev:worker -- --test-scheduled`).
// The config is checked before wrangler starts: a bad one is one line and exit 2, not a 500 on every request.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { ExitCode, exitFor } from './exit-codes.js';
import { loadConfig, readConfigValue } from './load-config.js';

/** The variables a Worker reads, forwarded to it when set. */
const FORWARDED_VARS = ['REDIS_URL', 'EDGEPIPE_CONFIG', 'EDGEPIPE_SECRETS', 'EDGEPIPE_ADMIN_TOKEN'] as const;

/**
 * The arguments of `wrangler dev` for `env` and the caller's `extra` arguments.
 * @throws ConfigError when EDGEPIPE_CONFIG cannot be read or the config is invalid.
 */
function wranglerDevArgs(env: Record<string, string | undefined>, extra: readonly string[]): string[] {
  loadConfig({}, env);
  const args = ['dev', '--ip', env.HOST || '127.0.0.1', '--port', env.PORT || '8787'];
  for (const name of FORWARDED_VARS) {
    const value = env[name];
    if (!value) continue;
    // wrangler splits `--var` at the first colon only, so JSON and URLs pass whole. The values are marked
    // hidden in wrangler's binding table.
    const text = name === 'EDGEPIPE_CONFIG' ? JSON.stringify(readConfigValue(value)) : value;
    args.push('--var', `${name}:${text}`);
  }
  return [...args, ...extra];
}

function main(): void {
  let args: string[];
  try {
    args = wranglerDevArgs(process.env, process.argv.slice(2));
  } catch (error) {
    const { line, code } = exitFor(error);
    console.error(line);
    process.exit(code);
  }
  const wrangler = join(
    dirname(createRequire(import.meta.url).resolve('wrangler/package.json')),
    'bin/wrangler.js',
  );
  const child = spawn(process.execPath, [wrangler, ...args], {
    stdio: 'inherit',
    // wrangler dev wraps the Worker in a middleware that reads whatever request body is unread once the
    // handler has returned its Response (templates/middleware/middleware-ensure-req-body-drained.ts). A
    // sender's transcript is returned while the upload is still being read, locked to the transfer's reader,
    // so it logged "Failed to drain the unused request body ... locked" for every PUT; deployed Workers have
    // no such middleware.
    env: { ...process.env, WRANGLER_DISABLE_REQUEST_BODY_DRAINING: 'true' },
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  // Ended by a signal: exit as a shell reports it (128 + its number).
  child.on('exit', (code, signal) =>
    process.exit(code ?? (signal ? 128 + constants.signals[signal] : ExitCode.internal)),
  );
}

main();
