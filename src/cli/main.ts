import { Command, Option } from 'commander';
import { brokerName } from '../adapter/node/broker-from-config.js';
import { startNodeServer } from '../adapter/node/serve.js';
import { ConfigError } from '../config.js';
import { VERSION } from '../version.js';
import { loadConfig } from './load-config.js';

/** `edgepipe serve`: run the broker until SIGTERM/SIGINT, then drain. */
async function serve(flags: {
  host?: string;
  port?: string;
  config?: string;
  redis?: string;
}): Promise<void> {
  const config = loadConfig(flags, process.env);
  const running = await startNodeServer(config);
  console.log(`edgepipe ${VERSION} listening on ${running.url} (${brokerName(config)})`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      console.log(`${signal} again: stopping now`);
      process.exit(1);
    }
    stopping = true;
    console.log(`${signal}: draining, transfers may finish for ${config.server.shutdownGraceMs} ms`);
    running.drain(config.server.shutdownGraceMs).then(
      () => {
        console.log('stopped');
        process.exit(0);
      },
      (error) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
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
    .action(serve);
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
