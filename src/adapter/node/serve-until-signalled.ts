import type { Config } from '../../config.js';
import { VERSION } from '../../version.js';
import { openModeWarning } from '../open-warning.js';
import { brokerName } from './broker-from-config.js';
import { startNodeServer } from './serve.js';

/** How a runtime delivers signals and ends the process (Node's `process`, Deno's `Deno`). */
export interface ProcessControl {
  onSignal(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  exit(code: number): never;
}

/**
 * Runs the Node server until SIGTERM or SIGINT: prints the start-up line (tests and scripts wait for it)
 * and the open-mode warning, drains on the first signal, stops at once on a second one. `runtime` names a
 * runtime other than Node in the start-up line.
 */
export async function serveUntilSignalled(
  config: Config,
  control: ProcessControl,
  runtime?: string,
): Promise<void> {
  const running = await startNodeServer(config);
  const on = runtime ? `${brokerName(config)}, ${runtime}` : brokerName(config);
  console.log(`edgepipe ${VERSION} listening on ${running.url} (${on})`);
  const warning = openModeWarning(config);
  if (warning) console.warn(warning);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      console.log(`${signal} again: stopping now`);
      control.exit(1);
    }
    stopping = true;
    console.log(`${signal}: draining, transfers may finish for ${config.server.shutdownGraceMs} ms`);
    running.drain(config.server.shutdownGraceMs).then(
      () => {
        console.log('stopped');
        control.exit(0);
      },
      (error) => {
        console.error(error);
        control.exit(1);
      },
    );
  };
  control.onSignal('SIGTERM', () => stop('SIGTERM'));
  control.onSignal('SIGINT', () => stop('SIGINT'));
}
