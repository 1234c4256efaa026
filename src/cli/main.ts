import { Command, Option } from 'commander';
import { serveUntilSignalled } from '../adapter/node/serve-until-signalled.js';
import { ConfigError } from '../config.js';
import { VERSION } from '../version.js';
import { loadConfig } from './load-config.js';
import { type SignFlags, signedUrl } from './sign.js';

/** `edgepipe serve`: run the broker until SIGTERM/SIGINT, then drain. */
async function serve(flags: {
  host?: string;
  port?: string;
  config?: string;
  redis?: string;
  tlsCert?: string;
  tlsKey?: string;
  trustProxy?: string;
}): Promise<void> {
  await serveUntilSignalled(loadConfig(flags, process.env), {
    onSignal: (signal, handler) => process.on(signal, handler),
    exit: (code) => process.exit(code),
  });
}

export function buildProgram(): Command {
  const program = new Command('edgepipe')
    .description('A pipe broker: stream bytes between hosts that can only make outbound HTTP requests.')
    .version(VERSION);
  program
    .command('serve')
    .description('run the broker')
    .addOption(new Option('--host <host>', 'interface to listen on (default 0.0.0.0)').env('HOST'))
    .addOption(new Option('--port <port>', 'port to listen on (default 8080)').env('PORT'))
    .addOption(new Option('--config <file>', 'JSON config file').env('EDGEPIPE_CONFIG'))
    .addOption(
      new Option('--redis <url>', 'Redis URL: stateless instances sharing pipes (default: in memory)').env(
        'REDIS_URL',
      ),
    )
    .addOption(new Option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain'))
    .addOption(new Option('--tls-key <file>', 'and this PEM private key'))
    .addOption(
      new Option(
        '--trust-proxy <list>',
        'proxies whose X-Forwarded-For names the client (IPs, CIDRs, loopback)',
      ),
    )
    .action(serve);
  program
    .command('sign')
    .description(
      'print a signed URL that lets its holder send to, or receive from, one pipe (auth.mode signed)',
    )
    .argument('<path>', 'the pipe path, e.g. /backups/db.tar (with --prefix: a namespace)')
    .option('--send', 'the URL may send (PUT/POST)')
    .option('--recv', 'the URL may receive (GET)')
    .option('--n <receivers>', 'bind the URL to this many receivers (?n=)')
    .option('--ttl <duration>', 'how long the URL is valid: 90s, 30m, 1h, 7d', '1h')
    .option('--prefix', 'admit every pipe at or below <path> (the holder appends a name)')
    .addOption(
      new Option('--url <url>', "the broker's public URL")
        .env('EDGEPIPE_PUBLIC_URL')
        .default('http://localhost:8080'),
    )
    .addOption(new Option('--config <file>', 'JSON config file holding auth.secrets').env('EDGEPIPE_CONFIG'))
    .action(async (path: string, flags: SignFlags) => {
      console.log(await signedUrl(path, flags, process.env));
    });
  return program;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    if (error instanceof ConfigError) {
      console.error(`edgepipe: ${error.message}`);
      process.exit(2);
    }
    console.error(error);
    process.exit(1);
  });
