// `npm run start:deno`: edgepipe on Deno, with the flags of `edgepipe serve` (`npm run start:deno -- --redis ...`).
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
import { Command } from 'commander';
import { serveFromArgs } from '../../cli/serve-command.js';

declare const Deno: {
  args: string[];
  env: { toObject(): Record<string, string> };
  addSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  exit(code: number): never;
  version: { deno: string };
};

await serveFromArgs(
  new Command('start:deno').description('edgepipe on Deno: the options of `edgepipe serve`'),
  Deno.args,
  Deno.env.toObject(),
  { onSignal: (signal, handler) => Deno.addSignalListener(signal, handler), exit: (code) => Deno.exit(code) },
  `deno ${Deno.version.deno}`,
);
