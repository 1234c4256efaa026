#!/usr/bin/env -S node --single-threaded-gc --max-semi-space-size=4
// The edgepipe command. On 2 cores V8's concurrent GC threads compete with the transfers (docs/benchmarks.md,
// "Garbage collection"). The young generation's size trades CPU for memory: with a receiver's writes corked,
// 1 MiB semi-spaces cost 1.90 s of CPU per GiB against 1.24 at 4 MiB and 1.26 at V8's default, whose peak RSS
// was 176 MiB against 151 at 4 MiB (7 interleaved rounds; piping-server 1.26 s, 100 MiB). Run
// `node dist/cli/main.js` to start without the flags.
import('../dist/cli/main.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('edgepipe: dist/ is missing; run `npm run build` first.');
    process.exit(1);
  }
  throw error;
});
