// `npm run start:bun`: edgepipe on Bun. Only the listening is Bun's own.
import { fetchApp } from '../fetch-app.js';

interface BunServer {
  requestIP(request: Request): { address: string } | null;
}

declare const Bun: {
  serve(options: {
    port: number;
    hostname: string;
    fetch: (request: Request, server: BunServer) => Response | Promise<Response>;
    maxRequestBodySize: number;
    idleTimeout: number;
    tls?: { cert: string; key: string };
  }): { port: number; hostname: string; stop(closeActive?: boolean): void };
};

const served = await fetchApp(process.env, `bun ${process.versions.bun}`);
const server = Bun.serve({
  port: served.config.server.port,
  hostname: served.config.server.host,
  fetch: (request, bun) => served.fetch(request, bun.requestIP(request)?.address),
  // Bun refuses bodies over 128 MB by default: a pipe's body has no size of its own.
  maxRequestBodySize: Number.MAX_SAFE_INTEGER,
  // Bun closes a connection idle for 10 s by default; a receiver may wait for its sender for minutes.
  idleTimeout: 0,
  ...(served.tls && { tls: served.tls }),
});
served.listening(`${served.tls ? 'https' : 'http'}://${server.hostname}:${server.port}`);
process.on('SIGTERM', () => {
  server.stop(false);
  served.drain().then(() => process.exit(0));
});
