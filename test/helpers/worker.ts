import { join } from 'node:path';
import { repoRoot, type ServerProcess, spawnListening } from './processes.js';
import { freePort } from './redis-server.js';

/** The variables `npm run dev:worker` forwards to the Worker, none set unless a test sets them. */
export const NO_WORKER_VARS = {
  REDIS_URL: '',
  EDGEPIPE_CONFIG: '',
  EDGEPIPE_SECRETS: '',
  EDGEPIPE_ADMIN_TOKEN: '',
};

/**
 * `npm run dev:worker` (wrangler dev: workerd, offline) on a free port, after its build step (`npm test`
 * builds before vitest); `vars` are set in its environment as a user would set them.
 */
export async function startWorker(
  vars: Partial<Record<keyof typeof NO_WORKER_VARS, string>>,
  extra: string[] = [],
): Promise<ServerProcess> {
  const port = await freePort();
  return spawnListening(process.execPath, [join(repoRoot, 'dist/cli/dev-worker.js'), ...extra], {
    ...NO_WORKER_VARS,
    ...vars,
    HOST: '127.0.0.1',
    PORT: String(port),
    WRANGLER_SEND_METRICS: 'false',
    CI: '1',
  });
}
