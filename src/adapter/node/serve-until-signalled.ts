import { ExitCode, SIGNAL_EXIT_CODES } from '../../cli/exit-codes.js';
import type { Config } from '../../config.js';
import { VERSION } from '../../version.js';
import { openModeWarning } from '../open-warning.js';
import { brokerName } from './broker-from-config.js';
import { type RunningServer, startNodeServer } from './serve.js';

/** How a runtime delivers signals and ends the process (Node's `process`, Deno's `Deno`). */
export interface ProcessControl {
  onSignal(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  exit(code: number): never;
}

/**
 * Runs the Node server (on Node, Bun and Deno) until SIGTERM or SIGINT: prints the start-up line (tests and
 * scripts wait for it) and the open-mode warning, drains on the first signal (done as soon as the last
 * transfer ends, at the latest after the grace period) and exits 0, stops at once on a second one (exit
 * 130 or 143, as if the signal had killed it). `runtime` names the runtime in the start-up line.
 * @throws what `startNodeServer` throws when it cannot start.
 */
export async function serveUntilSignalled(
  config: Config,
  control: ProcessControl,
  runtime: string,
): Promise<void> {
  let running: RunningServer | undefined;
  let stopping = false;
  const stop = (signal: 'SIGTERM' | 'SIGINT') => {
    if (stopping) {
      console.log(`${signal} again: stopping now, running transfers are cut`);
      control.exit(SIGNAL_EXIT_CODES[signal]);
    }
    stopping = true;
    if (!running) {
      console.log(`${signal}: stopped before serving`);
      control.exit(ExitCode.ok);
    }
    console.log(`${signal}: draining, transfers may finish for ${config.server.shutdownGraceMs} ms`);
    running.drain(config.server.shutdownGraceMs).then(
      () => {
        console.log('stopped');
        control.exit(ExitCode.ok);
      },
      (error) => {
        console.error(error);
        control.exit(ExitCode.internal);
      },
    );
  };
  // Listening for signals before the start-up line is out: whoever waits for that line may signal at once.
  control.onSignal('SIGTERM', () => stop('SIGTERM'));
  control.onSignal('SIGINT', () => stop('SIGINT'));
  running = await startNodeServer(config);
  console.log(`edgepipe ${VERSION} listening on ${running.url} (${brokerName(config)}, ${runtime})`);
  const warning = openModeWarning(config);
  if (warning) console.warn(warning);
}
