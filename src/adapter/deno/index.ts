// `npm run start:deno`: edgepipe on Deno.
//
// Deno listens through its `node:http` (the Node adapter's server), not `Deno.serve`. Deno 2.9's
// `Deno.serve` reads a chunked request body (`curl -T -`, any upload without Content-Length) off the socket
// whether or not the body is being read, into a buffer on its Rust side, and every piece read from that
// buffer moves the rest of it (one memmove of the whole backlog per upload chunk). A relay, whose upload
// waits on its receiver, builds that backlog and slows as it grows: 1 GiB at 3 MiB/s, and a bare
// `Deno.serve` relay with no edgepipe code in it did 20-50 MiB/s for 256 MiB. The broker window's
// backpressure does not reach the sender either (~90 MiB in flight for a 20 MB/s receiver, ~16 MiB here).
// Reading `request.body` otherwise (BYOB reads of up to 16 MiB, an 8 MiB read-ahead) does not help.
// Through `node:http` Deno relays at Node's pace (1 GiB: ~770 MiB/s chunked, ~930 MiB/s declared).
//
// `start:deno` passes Deno the V8 flags `bin/edgepipe.js` gives Node (`--single-threaded-gc
// --max-semi-space-size=1`, see README, Benchmark). Without them, 1 GiB through Redis cost Deno 4.32 s of CPU
// against Node's 3.90 (medians of 9 interleaved runs); perf put ~30 % of Deno's samples on its "V8
// DefaultWorker" GC threads, ~7 % with the flags. With them: 3.80 s/GiB, 276 MiB/s (Node 277).
import { loadConfig } from '../../cli/load-config.js';
import { VERSION } from '../../version.js';
import { brokerName } from '../node/broker-from-config.js';
import { startNodeServer } from '../node/serve.js';
import { openModeWarning } from '../open-warning.js';

declare const Deno: {
  env: { toObject(): Record<string, string> };
  addSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  exit(code: number): never;
  version: { deno: string };
};

const config = loadConfig({}, Deno.env.toObject());
const running = await startNodeServer(config);
console.log(
  `edgepipe ${VERSION} listening on ${running.url} (${brokerName(config)}, deno ${Deno.version.deno})`,
);
const warning = openModeWarning(config);
if (warning) console.warn(warning);
let stopping = false;
const stop = () => {
  if (stopping) Deno.exit(1);
  stopping = true;
  running.drain(config.server.shutdownGraceMs).then(
    () => Deno.exit(0),
    (error) => {
      console.error(error);
      Deno.exit(1);
    },
  );
};
Deno.addSignalListener('SIGTERM', stop);
Deno.addSignalListener('SIGINT', stop);
