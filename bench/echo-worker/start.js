// Starts the echo Worker as `npm run dev:worker` starts edgepipe: wrangler's API, inspector off, on PORT.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// As dev:worker: wrangler's development-only middleware would read the body the echo streams back.
process.env.WRANGLER_DISABLE_REQUEST_BODY_DRAINING = 'true';
const { unstable_startWorker } = await import('wrangler');
const worker = await unstable_startWorker({
  config: join(dirname(fileURLToPath(import.meta.url)), 'wrangler.toml'),
  dev: {
    inspector: false,
    remote: false,
    watch: false,
    persist: false,
    server: { hostname: '127.0.0.1', port: Number(process.env.PORT ?? 0) },
  },
});
await worker.ready;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => void worker.dispose().finally(() => process.exit(0)));
}
