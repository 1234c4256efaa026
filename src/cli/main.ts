import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../version.js';
import { addConsumeCommand } from './consume-command.js';
import { exitFor } from './exit-codes.js';
import { addRecvCommand } from './recv-command.js';
import { addReportCommand } from './report-command.js';
import { addSendCommand } from './send-command.js';
import { addServeOptions, commanderExitCode, serveWith } from './serve-command.js';
import { type SignFlags, signedUrl } from './sign.js';
import { stdinReadable } from './stdin-stream.js';
import { type TransferIo, transferExit } from './transfer-outcome.js';
import { addTunnelCommands } from './tunnel-commands.js';

/** The `edgepipe` command: `serve`, `sign`, `send`, `recv`, `expose`, `connect`, `report` and `consume`. */
export function buildProgram(): Command {
  const program = new Command('edgepipe')
    .description('A pipe broker: stream bytes between hosts that can only make outbound HTTP requests.')
    .version(VERSION)
    // Errors come back here, so every way out goes through one table of exit codes.
    .exitOverride();
  addServeOptions(program.command('serve').description('run the broker')).action((flags) =>
    serveWith(
      flags,
      process.env,
      { onSignal: (signal, handler) => process.on(signal, handler), exit: (code) => process.exit(code) },
      `node ${process.versions.node}`,
    ),
  );
  program
    .command('sign')
    .description(
      'print a signed URL that lets its holder send to, receive from, or both, one pipe or a namespace (auth.mode signed)',
    )
    .argument('<path>', 'the pipe path, e.g. /backups/db.tar (with --prefix or --tunnel: a namespace)')
    .option('--send', 'the URL may send (PUT/POST); with --recv as well: scope both')
    .option('--recv', 'the URL may receive (GET); with --send as well: scope both')
    .option('--n <receivers>', 'bind the URL to this many receivers (?n=)')
    .option(
      '--ttl <duration>',
      'how long the URL is valid: seconds (3600) or a duration (90s, 30m, 1h, 7d)',
      '1h',
    )
    .option('--prefix', 'admit every pipe at or below <path> (the holder appends a name)')
    .option(
      '--tunnel',
      'a whole tunnel: send and receive on every pipe at or below <path>; short for --send --recv --prefix (not with --n)',
    )
    .addOption(
      new Option('--url <url>', "the broker's public URL")
        .env('EDGEPIPE_PUBLIC_URL')
        .default('http://localhost:8080'),
    )
    .addOption(
      new Option(
        '--config <file-or-json>',
        'the JSON config holding auth.secrets: a file, or the JSON text',
      ).env('EDGEPIPE_CONFIG'),
    )
    .action(async (path: string, flags: SignFlags) => {
      console.log(await signedUrl(path, flags, process.env));
    });
  addSendCommand(program, processIo);
  addRecvCommand(program, processIo);
  addTunnelCommands(program, processIo);
  addReportCommand(program, processIo);
  addConsumeCommand(program, processIo);
  return program;
}

/** `send` and `recv` as this process runs them: its streams, its signals, its exit code. */
const processIo: TransferIo = {
  env: process.env,
  get stdin() {
    return stdinReadable();
  },
  stdout: process.stdout,
  stderrIsTty: process.stderr.isTTY === true,
  stderr: (text) => process.stderr.write(text),
  interruptSignal() {
    const controller = new AbortController();
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        const interrupted = Object.assign(new Error(`interrupted by ${signal}`), {
          name: 'Interrupted',
          signal,
        });
        controller.abort(interrupted);
      });
    }
    return controller.signal;
  },
  async run(command) {
    let failure: unknown;
    try {
      await command();
    } catch (error) {
      failure = error;
    }
    const { code, line } = transferExit(failure);
    if (line) console.error(line);
    // stdout may still hold the tail of a received body: exit once it is flushed.
    process.stdout.write('', () => process.exit(code));
  },
};

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    // Commander has printed its own message (or the help) already.
    if (error instanceof CommanderError) process.exit(commanderExitCode(error));
    const { line, code } = exitFor(error);
    console.error(line);
    process.exit(code);
  });
