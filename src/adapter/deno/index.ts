// `npm run start:deno`: edgepipe on Deno. Only the listening is Deno's own.
import { fetchApp } from '../fetch-app.js';

declare const Deno: {
  serve(
    options: {
      port: number;
      hostname: string;
      cert?: string;
      key?: string;
      onListen?: (address: { hostname: string; port: number }) => void;
    },
    handler: (request: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  ): { shutdown(): Promise<void> };
  env: { toObject(): Record<string, string> };
  addSignalListener(signal: 'SIGTERM', handler: () => void): void;
  exit(code: number): never;
  version: { deno: string };
};

const served = await fetchApp(Deno.env.toObject(), `deno ${Deno.version.deno}`);
const server = Deno.serve(
  {
    port: served.config.server.port,
    hostname: served.config.server.host,
    ...served.tls,
    onListen: ({ hostname, port }) =>
      served.listening(`${served.tls ? 'https' : 'http'}://${hostname}:${port}`),
  },
  (request, info) => served.fetch(request, info.remoteAddr.hostname),
);
Deno.addSignalListener('SIGTERM', () => {
  void server.shutdown();
  served.drain().then(() => Deno.exit(0));
});
