import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import {
  createServer as createH2cServer,
  createSecureServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2Session,
  type SecureServerOptions,
} from 'node:http2';
import type { Socket } from 'node:net';
import { VersionedServerResponse } from './http10-response.js';
import type { NodeResponse } from './write-source-response.js';

/**
 * HTTP/2 flow-control windows for what clients send (uploads). The default 64 KiB stream window lets a sender
 * put 64 KiB on the wire per window update; these bound what one upload (and one connection) can have in
 * flight towards the server, beside the pipe's own window.
 */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * The high-water mark of HTTP/1 sockets, request bodies and responses. At Node's default (16 KiB) every 64 KiB
 * chunk a receiver is written overflows it, so each write waits a turn for 'drain' and the body's reads pause
 * and resume the socket over and over. Bounded all the same: per connection, on top of the pipe's window.
 */
const STREAM_HIGH_WATER_BYTES = 256 * 1024;

/**
 * Whether a session's connection window may be raised with `setLocalWindowSize`. Bun's (1.4.5) also raises,
 * without a SETTINGS frame, the window it gives each new stream, and sends a stream WINDOW_UPDATE only once
 * half of that is used; the client keeps to the advertised stream window, so every HTTP/2 upload longer than
 * it hangs (measured: stalls at exactly 1,048,576 bytes; oven-sh/bun#40180 and #41942, not in a release).
 * Bun keeps the protocol's 64 KiB connection window instead, which it replenishes as it reads.
 */
const RAISES_CONNECTION_WINDOW = process.versions.bun === undefined;

/** A request as Node hands it over: HTTP/1 or an HTTP/2 stream through the compatibility API. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;

/** Serves one request; both protocols reach the same handler. */
export type NodeRequestHandler = (request: NodeRequest, response: NodeResponse) => void;

/** How to listen: which protocols, and the limits on a request head. */
export interface HttpListenerOptions {
  /** Largest request head in bytes (HTTP/1: answered 431; HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxHeaderBytes: number;
  /** A client must send its first request head within this; a connection that does not is dropped. */
  readonly headersTimeoutMs: number;
  /** PEM chain and key: HTTPS, offering `h2` and `http/1.1` through ALPN. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  /** Without `tls`: cleartext HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1. */
  readonly h2c: boolean;
}

/** The listening server and what a shutdown needs from it. */
export interface HttpListener {
  readonly server: Server | Http2SecureServer | Http2Server;
  /**
   * Part of a drain, called repeatedly: every HTTP/2 session gets GOAWAY (its open streams run to their end,
   * no new ones start) and idle HTTP/1 keep-alive connections close.
   */
  closeIdle(): void;
  /** Cuts every connection at once. */
  closeAll(): void;
}

/**
 * Creates the server for `options`: plain HTTP/1.1; HTTPS with HTTP/2 and HTTP/1.1 on one port (ALPN picks);
 * or cleartext h2c. Every kind answers HTTP/1.0 requests with a 1.0 status line.
 */
export function createHttpListener(options: HttpListenerOptions, handler: NodeRequestHandler): HttpListener {
  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  const http1 = {
    maxHeaderSize: options.maxHeaderBytes,
    // A transfer's request lasts as long as its upload: no cap on the whole request, only on its head
    // (a client that opens a connection and sends half a head is dropped after this).
    requestTimeout: 0,
    headersTimeout: options.headersTimeoutMs,
    // Node looks for expired heads on this period (30 s by default, which would stretch a short timeout).
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, options.headersTimeoutMs / 4)),
    ServerResponse: VersionedServerResponse,
    highWaterMark: STREAM_HIGH_WATER_BYTES,
  };
  const http2: SecureServerOptions = {
    settings: { maxHeaderListSize: options.maxHeaderBytes, initialWindowSize: STREAM_WINDOW_BYTES },
    // The TLS handshake counts towards the head's time.
    handshakeTimeout: options.headersTimeoutMs,
  };
  let server: Server | Http2SecureServer | Http2Server;
  if (options.tls) {
    const secure = createSecureServer({
      ...http2,
      ...options.tls,
      allowHTTP1: true,
      Http1ServerResponse: VersionedServerResponse as unknown as typeof import('node:http').ServerResponse,
    });
    // HTTP/1.1 connections on this server run Node's HTTP/1 code, which reads its limits from the server
    // object; createSecureServer takes none of them as options, so they are set as http.createServer would.
    Object.assign(secure, {
      maxHeaderSize: http1.maxHeaderSize,
      requestTimeout: http1.requestTimeout,
      headersTimeout: http1.headersTimeout,
      connectionsCheckingInterval: http1.connectionsCheckingInterval,
      keepAliveTimeout: 5_000,
      requireHostHeader: true,
      maxRequestsPerSocket: 0,
    });
    server = secure;
  } else if (options.h2c) {
    server = createH2cServer(http2);
  } else {
    server = createHttpServer(http1);
  }
  server.on('request', handler);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    // The connection's window caps every upload on it together; one stream's worth per expected sender.
    if (RAISES_CONNECTION_WINDOW)
      session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
    // HTTP/1 drops a connection whose head does not come in time; an HTTP/2 session that opens no stream in
    // that time (nothing sent, or a HEADERS frame never finished) goes the same way.
    const timer = setTimeout(() => session.destroy(), options.headersTimeoutMs);
    const started = () => clearTimeout(timer);
    session.once('stream', started);
    session.once('close', () => {
      started();
      sessions.delete(session);
    });
  });
  return {
    server,
    closeIdle() {
      for (const session of sessions) if (!session.closed) session.close();
      (server as Partial<Server>).closeIdleConnections?.();
    },
    closeAll() {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
  };
}
