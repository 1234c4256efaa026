// Starts the echo Worker as `npm run dev:worker` starts edgepipe: wrangler's bundle on workerd, nothing in
// front, inspector off, on PORT (dist/cli/local-workerd.js; `npm run build` first, as the bench does).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveWorker } from '../../dist/cli/local-workerd.js';

const worker = await serveWorker({
  config: join(dirname(fileURLToPath(import.meta.url)), 'wrangler.toml'),
  host: '127.0.0.1',
  port: Number(process.env.PORT ?? 0),
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => void worker.dispose().finally(() => process.exit(0)));
}
