import { readFileSync } from 'node:fs';
import { IncomingMessage, ServerResponse } from 'node:http';
import { constants, Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { createApp, joinedHeaderValues } from '../../app.js';
import type { Broker } from '../../broker/types.js';
import { sourceOfStream } from '../../byte-source.js';
import { type Config, ConfigError } from '../../config.js';
import { runtimeFromConfig } from './broker-from-config.js';
import {
  createHttpListener,
  type HttpListener,
  type NodeRequest,
  type NodeRequestHandler,
} from './http-listener.js';
import { incomingSource } from './incoming-source.js';
import { listenError } from './listen-error.js';
import { type SourceResponse, writeSourceResponse } from './write-source-response.js';

export interface NodeServerOptions {
  /** Defaults to the broker `config` asks for. */
  readonly broker?: Broker;
  readonly logError?: (error: unknown) => void;
}

/** A listening edgepipe on Node. */
export interface RunningServer {
  readonly server: HttpListener['server'];
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

/** What `@hono/node-server` passes as the app's env: the request and response it was handed. */
interface NodeBindings {
  readonly incoming?: unknown;
  readonly outgoing?: unknown;
}

const nodeRequest = (env: unknown): NodeRequest | undefined => {
  const incoming = (env as NodeBindings | undefined)?.incoming;
  return incoming instanceof IncomingMessage || incoming instanceof Http2ServerRequest ? incoming : undefined;
};

/**
 * Serves the edgepipe app with `@hono/node-server` on `config.server.host:port`: HTTP/1.1, HTTPS with HTTP/2
 * beside it (`server.tls`), or cleartext h2c (`server.h2c`).
 * @throws BrokerUnavailableError when the Redis the config names cannot be reached; ListenError when the
 * address cannot be listened on (the broker is released first).
 */
export async function startNodeServer(
  config: Config,
  options: NodeServerOptions = {},
): Promise<RunningServer> {
  const runtime = runtimeFromConfig(config, options.broker ? { broker: options.broker } : {});
  const broker = runtime.broker;
  // A broker that cannot get ready has closed its connections itself.
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
      const incoming = nodeRequest(env);
      return incoming ? incomingSource(incoming) : sourceOfStream(request.body);
    },
    // Node keeps the raw head: repeated headers (X-Piping) come out one by one, as the client sent them.
    headerValues: (request, env, name) => {
      const raw = nodeRequest(env)?.rawHeaders;
      if (!raw) return joinedHeaderValues(request, env, name);
      const values: string[] = [];
      for (let i = 0; i + 1 < raw.length; i += 2)
        if (raw[i]!.toLowerCase() === name) values.push(raw[i + 1]!);
      return values;
    },
    peerAddress: (_request, env) => nodeRequest(env)?.socket.remoteAddress,
    // The HTTP/1 parser holds heads to `maxHeaderSize` (the listener's) and answers 431 itself.
    headLimited: (_request, env) => nodeRequest(env) instanceof IncomingMessage,
    // Node's parser keeps the target as sent; @hono/node-server builds request.url from it with the URL
    // parser, which resolves dot segments.
    requestTarget: (_request, env) => nodeRequest(env)?.url,
    ...(options.logError ? { logError: options.logError } : {}),
  });
  let draining = false;
  const serve = async (request: Request, env: unknown): Promise<Response> => {
    if (draining) {
      // HTTP/2 has no Connection header (RFC 9113 §8.2.2): its session gets GOAWAY instead.
      const http1 = nodeRequest(env) instanceof IncomingMessage;
      return new Response(SHUTTING_DOWN, {
        status: 503,
        headers: {
          'Content-Type': 'text/plain',
          ...(http1 && { Connection: 'close' }),
          'Retry-After': '1',
        },
      });
    }
    const response = await app.fetch(request, env);
    const outgoing = (env as NodeBindings).outgoing;
    const parts = streaming.get(response);
    if (parts && (outgoing instanceof ServerResponse || outgoing instanceof Http2ServerResponse)) {
      writeSourceResponse(parts, outgoing);
      return RESPONSE_ALREADY_SENT;
    }
    return response;
  };
  const http1 = getRequestListener(serve);
  // @hono/node-server resets an HTTP/2 stream whose request body is unread as soon as the handler returns,
  // which for a pipe is before its upload has been read: HTTP/2 requests go without that cleanup, and
  // `endUnreadUpload` does it once the response is complete.
  const http2 = getRequestListener(serve, { autoCleanupIncoming: false });
  const listener: NodeRequestHandler = (request, response) => {
    if (request instanceof Http2ServerRequest) {
      endUnreadUpload(request);
      void http2(request, response);
    } else {
      void http1(request, response);
    }
  };
  const tls = config.server.tls;
  const listening = createHttpListener(
    {
      maxHeaderBytes: config.server.maxHeaderBytes,
      headersTimeoutMs: config.server.headersTimeoutMs,
      tls: tls && readTlsFiles(tls),
      h2c: config.server.h2c,
    },
    listener,
  );
  const server = listening.server;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.server.port, config.server.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await broker.close().catch(() => {});
    throw listenError(error, config.server.host, config.server.port);
  }
  runtime.watcher.start();
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let stopped: Promise<void> | undefined;
  const close = (): Promise<void> => {
    stopped ??= (async () => {
      draining = true;
      runtime.watcher.stop();
      listening.closeAll();
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
      listening.closeIdle();
      const sweep = setInterval(() => listening.closeIdle(), 100);
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

/**
 * A response that completes before its request body was read to the end (an error answered at once, a
 * transfer that failed) leaves the client's upload stalled on a closed flow-control window: RST_STREAM with
 * NO_ERROR tells it to stop sending without calling the response an error (RFC 9113 §8.1).
 *
 * The stream's 'finish' only says the response's last frame was handed to nghttp2, which holds it while the
 * client's window is shut; a reset then discards it, and the client takes the NO_ERROR reset for a clean end
 * (a receiver's body silently cut short). So a client that already ended its side (every GET) gets no reset
 * (the stream closes by itself), and an unread upload is reset only once the response's END_STREAM is out.
 */
function endUnreadUpload(request: Http2ServerRequest): void {
  const stream = request.stream;
  if (stream.endAfterHeaders) return;
  stream.once('finish', () => {
    const startedAt = Date.now();
    const resetWhenSent = () => {
      if (stream.destroyed || request.readableEnded || stream.state.remoteClose) return;
      // A client that never opens its window again would hold the stream: bounded by the head timeout.
      if (!stream.state.localClose && Date.now() - startedAt < UNREAD_UPLOAD_FLUSH_MS) {
        setTimeout(resetWhenSent, 10).unref();
        return;
      }
      stream.close(constants.NGHTTP2_NO_ERROR);
    };
    // Not from within the session's handling of frames: see `abort` in write-source-response.ts.
    setImmediate(resetWhenSent);
  });
}

/** How long an unread upload's response may wait for the client's window before the stream is reset. */
const UNREAD_UPLOAD_FLUSH_MS = 10_000;

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
