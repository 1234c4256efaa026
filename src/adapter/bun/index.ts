// `npm run start:bun`: edgepipe on Bun, with the flags of `edgepipe serve` (`npm run start:bun -- --redis ...`).
//
// Bun listens through its `node:http` (the Node adapter's server), not `Bun.serve`: Bun 1.4's `Bun.serve`
// drops a handler's Content-Length from a streaming body and sends it chunked
// (https://github.com/oven-sh/bun/issues/10507), so a receiver of a declared-length upload got no length,
// no progress and no way to tell a cut body from a whole one. Through `node:http` the header goes out, the
// drain on SIGTERM is the Node one, and the server costs less CPU per GiB than on `Bun.serve` (measured on
// 1 GiB relays: 74-91 against 107-131 ticks declared, 124-140 against 147-159 chunked).
import { Command } from 'commander';
import { serveFromArgs } from '../../cli/serve-command.js';

await serveFromArgs(
  new Command('start:bun').description('edgepipe on Bun: the options of `edgepipe serve`'),
  process.argv.slice(2),
  process.env,
  { onSignal: (signal, handler) => process.on(signal, handler), exit: (code) => process.exit(code) },
  `bun ${process.versions.bun}`,
);
