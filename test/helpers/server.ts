import { type RunningServer, startNodeServer } from '../../src/adapter/node/serve.js';
import { type ConfigInput, parseConfig } from '../../src/config.js';

/** A real edgepipe listener on 127.0.0.1 and a free port, in this process. */
export async function startTestServer(input: ConfigInput = {}): Promise<RunningServer> {
  return startNodeServer(parseConfig({ ...input, server: { host: '127.0.0.1', port: 0, ...input.server } }), {
    logError: () => {},
  });
}
