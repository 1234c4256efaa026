import { readFileSync } from 'node:fs';
import { createServer, IncomingMessage, type Server, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { createApp } from '../../app.js';
import type { Broker } from '../../broker/types.js';
import { sourceOfStream } from '../../byte-source.js';
import { type Config, ConfigError } from '../../config.js';
import { runtimeFromConfig } from './broker-from-config.js';
import { incomingSource } from './incoming-source.js';
import { type SourceResponse, writeSourceResponse } from './write-source-response.js';

export interface NodeServerOptions {
  /** Defaults to the broker `config` asks for. */
  readonly broker?: Broker;
  readonly logError?: (error: unknown) => void;
}

/** A listening edgepipe on Node. */
export interface RunningServer {
  readonly server: Server;
  /** `http://host:port` as bound (the real port when 0 was asked for). */
  readonly url: string;
  readonly port: number;
  readonly broker: Broker;
  /**
   * Graceful stop: refuse new requests (503) and parties, let running transfers finish for up to `graceMs`,
   * then cut what is left and release the broker.
   */
  drain(graceMs: number): Promise<void>;
  /** Immediate stop: every connection is cut. */
  close(): Promise<void>;
}

const SHUTTING_DOWN = '[ERROR] The server is shutting down.\n';

/** Serves the edgepipe app with `@hono/node-server` on `config.server.host:port`. */
export async function startNodeServer(
  config: Config,
  options: NodeServerOptions = {},
): Promise<RunningServer> {
  const runtime = runtimeFromConfig(config, options.broker ? { broker: options.broker } : {});
  const broker = runtime.broker;
  await broker.ready();
  // Streaming responses are written by `writeStreamResponse`; everything else by @hono/node-server.
  // What each streaming Response was made of, so it is written without materialising a full Response object.
  const streaming = new WeakMap<Response, SourceResponse>();
  const app = createApp(config, {
    broker,
    latency: runtime.latency,
    watcher: runtime.watcher,
    streamResponse: (body, init) => {
      // A placeholder Response: only the adapter sees it, and it writes the source itself.
      const response = new Response(null, init);
      streaming.set(response, { body, init });
      return response;
    },
    requestBody: (request, env) => {
      const incoming = (env as Partial<HttpBindings> | undefined)?.incoming;
      return incoming instanceof IncomingMessage ? incomingSource(incoming) : sourceOfStream(request.body);
    },
    peerAddress: (_request, env) =>
      (env as Partial<HttpBindings> | undefined)?.incoming?.socket.remoteAddress,
    ...(options.logError ? { logError: options.logError } : {}),
  });
  let draining = false;
  const listener = getRequestListener(async (request, env) => {
    if (draining) {
      return new Response(SHUTTING_DOWN, {
        status: 503,
        headers: { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close', 'Retry-After': '1' },
      });
    }
    const response = await app.fetch(request, env);
    const outgoing = (env as Partial<HttpBindings>).outgoing;
    const parts = streaming.get(response);
    if (parts && outgoing instanceof ServerResponse) {
      writeSourceResponse(parts, outgoing);
      return RESPONSE_ALREADY_SENT;
    }
    return response;
  });
  const httpOptions = {
    maxHeaderSize: config.server.maxHeaderBytes,
    // A transfer's request lasts as long as its upload: no cap on the whole request, only on its head
    // (a client that opens a connection and sends half a head is dropped after this).
    requestTimeout: 0,
    headersTimeout: config.server.headersTimeoutMs,
    // Node looks for expired heads on this period (30 s by default, which would stretch a short timeout).
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, config.server.headersTimeoutMs / 4)),
  };
  const tls = config.server.tls;
  const server: Server = tls
    ? createTlsServer({ ...httpOptions, ...readTlsFiles(tls) }, listener)
    : createServer(httpOptions, listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  runtime.watcher.start();
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let stopped: Promise<void> | undefined;
  const close = (): Promise<void> => {
    stopped ??= (async () => {
      draining = true;
      runtime.watcher.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await broker.close();
    })();
    return stopped;
  };

  return {
    server,
    url: `${tls ? 'https' : 'http'}://${host}:${address.port}`,
    port: address.port,
    broker,
    close,
    async drain(graceMs) {
      draining = true;
      broker.drain();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Connections turn idle as their transfers end; close them as they do.
      const sweep = setInterval(() => server.closeIdleConnections(), 100);
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([closed, grace]);
      clearInterval(sweep);
      clearTimeout(timer);
      await close();
    },
  };
}

/** The PEM certificate chain and key of `server.tls`; a file that cannot be read is a config error. */
function readTlsFiles(tls: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new ConfigError(`server.tls.${what}: cannot read ${file}: ${(error as Error).message}`);
    }
  };
  return { cert: read(tls.cert, 'cert'), key: read(tls.key, 'key') };
}
