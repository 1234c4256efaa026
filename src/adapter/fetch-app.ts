import { readFileSync } from 'node:fs';
import { createApp } from '../app.js';
import { loadConfig } from '../cli/load-config.js';
import type { Config } from '../config.js';
import { VERSION } from '../version.js';
import { brokerName, type NodeRuntime, runtimeFromConfig } from './node/broker-from-config.js';
import { openModeWarning } from './open-warning.js';

/**
 * What a runtime with a `fetch`-style server (Bun) serves. Deno listens through its `node:http` instead
 * (src/adapter/deno/index.ts says why).
 */
export interface FetchApp {
  readonly config: Config;
  /** Serves a request; `peer` is the socket's remote address, for per-client limits. */
  readonly fetch: (request: Request, peer?: string) => Response | Promise<Response>;
  readonly runtime: NodeRuntime;
  /** The PEM certificate chain and key of `server.tls`, read once; `undefined` serves plain HTTP. */
  readonly tls: { readonly cert: string; readonly key: string } | undefined;
  /** Prints the start-up line (tests and scripts wait for it) and starts the watcher. */
  listening(url: string): void;
  /** SIGTERM: refuse new parties, let transfers run for the grace period, then release everything. */
  drain(): Promise<void>;
}

/**
 * The config from the environment (`EDGEPIPE_CONFIG`, `HOST`, `PORT`, `REDIS_URL`), the broker and watcher
 * it asks for, and the app. Bun implements the Node APIs the broker and the config loader use (`node:fs`,
 * `node:net` through ioredis, `node:child_process` for hook commands), so it shares that part with the
 * Node adapter and differs only in how it listens.
 */
export async function fetchApp(
  env: Record<string, string | undefined>,
  runtimeName: string,
): Promise<FetchApp> {
  const config = loadConfig({}, env);
  const runtime = runtimeFromConfig(config);
  await runtime.broker.ready();
  const app = createApp(config, {
    broker: runtime.broker,
    latency: runtime.latency,
    watcher: runtime.watcher,
    peerAddress: (_request, env) => (env as { peer?: string } | undefined)?.peer,
  });
  const tls = config.server.tls && {
    cert: readFileSync(config.server.tls.cert, 'utf8'),
    key: readFileSync(config.server.tls.key, 'utf8'),
  };
  return {
    config,
    fetch: (request, peer) => app.fetch(request, { peer }),
    runtime,
    tls,
    listening(url) {
      runtime.watcher.start();
      console.log(`edgepipe ${VERSION} listening on ${url} (${brokerName(config)}, ${runtimeName})`);
      const warning = openModeWarning(config);
      if (warning) console.warn(warning);
    },
    async drain() {
      runtime.watcher.stop();
      runtime.broker.drain();
      await new Promise((resolve) => setTimeout(resolve, config.server.shutdownGraceMs));
      await runtime.broker.close();
    },
  };
}
