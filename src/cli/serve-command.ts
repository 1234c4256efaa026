import { type Command, CommanderError, Option } from 'commander';
import { type ProcessControl, serveUntilSignalled } from '../adapter/node/serve-until-signalled.js';
import { ExitCode, exitFor } from './exit-codes.js';
import { type ConfigFlags, loadConfig } from './load-config.js';

/**
 * Adds the options of `edgepipe serve` to `command`. The Bun and Deno entries take the same ones through
 * this, so `npm run start:bun -- --redis redis://...` means what `edgepipe serve --redis redis://...` does.
 */
export function addServeOptions(command: Command): Command {
  return command
    .addOption(new Option('--host <host>', 'interface to listen on (default 0.0.0.0)').env('HOST'))
    .addOption(new Option('--port <port>', 'port to listen on (default 8080)').env('PORT'))
    .addOption(
      new Option('--config <file-or-json>', 'the JSON config: a file, or the JSON text itself').env(
        'EDGEPIPE_CONFIG',
      ),
    )
    .addOption(
      new Option('--redis <url>', 'Redis URL: stateless instances sharing pipes (default: in memory)').env(
        'REDIS_URL',
      ),
    )
    .addOption(
      new Option('--tls-cert <file>', 'serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain'),
    )
    .addOption(new Option('--tls-key <file>', 'and this PEM private key'))
    .addOption(new Option('--h2c', 'serve cleartext HTTP/2 with prior knowledge (for a proxy), not HTTP/1.1'))
    .addOption(
      new Option(
        '--trust-proxy <list>',
        'proxies whose X-Forwarded-For names the client (IPs, CIDRs, loopback)',
      ),
    );
}

/**
 * Serves until SIGTERM/SIGINT with the config from `flags` and `env`. A failure to start (bad config, port
 * taken, Redis unreachable) prints one line and exits with its code (see `ExitCode`).
 */
export async function serveWith(
  flags: ConfigFlags,
  env: Record<string, string | undefined>,
  control: ProcessControl,
  runtime: string,
): Promise<void> {
  try {
    await serveUntilSignalled(loadConfig(flags, env), control, runtime);
  } catch (error) {
    const { line, code } = exitFor(error);
    console.error(line);
    control.exit(code);
  }
}

/** The exit code of a commander error (`--help` and `--version` end well; a bad flag is a usage error). */
export function commanderExitCode(error: CommanderError): number {
  return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
}

/**
 * An entry other than the `edgepipe` command (Bun's, Deno's): parses `args` as `edgepipe serve` does and
 * serves. Commander prints a bad flag's message itself.
 */
export async function serveFromArgs(
  command: Command,
  args: readonly string[],
  env: Record<string, string | undefined>,
  control: ProcessControl,
  runtime: string,
): Promise<void> {
  const parsed = addServeOptions(command).exitOverride().allowExcessArguments(false);
  try {
    parsed.parse([...args], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) control.exit(commanderExitCode(error));
    throw error;
  }
  await serveWith(parsed.opts<ConfigFlags>(), env, control, runtime);
}
