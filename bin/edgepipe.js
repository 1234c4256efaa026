#!/usr/bin/env -S node --single-threaded-gc
// The edgepipe command. On 2 cores V8's concurrent GC threads compete with the transfers (docs/benchmarks.md,
// "Garbage collection"); a 1 MiB semi-space, once passed too, cost 15 % more CPU per GiB after a receiver's
// writes were corked (1.06 vs 0.92 s, 11 interleaved rounds). Run `node dist/cli/main.js` to start without it.
import('../dist/cli/main.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('edgepipe: dist/ is missing; run `npm run build` first.');
    process.exit(1);
  }
  throw error;
});
