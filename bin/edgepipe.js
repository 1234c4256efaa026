#!/usr/bin/env -S node --single-threaded-gc --max-semi-space-size=1
// The edgepipe command. The V8 flags suit a streaming broker with a small heap: measured on 2 cores, the
// concurrent GC threads competed with the transfers and a large young generation let chunk buffers outlive
// scavenges, together costing about 30 % of the server's CPU per GiB (see README, Benchmark). Run
// `node dist/cli/main.js` to start without them.
import('../dist/cli/main.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('edgepipe: dist/ is missing; run `npm run build` first.');
    process.exit(1);
  }
  throw error;
});
