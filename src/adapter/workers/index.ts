import { createApp } from '../../app.js';
import { parseConfig } from '../../config.js';

/**
 * Cloudflare Workers entry (`wrangler dev`), a first cut for the runtimes issue to finish. The pages, errors
 * and the rendezvous work under `wrangler dev`; the transfer itself does not yet: the upload stalls once the
 * sender's transcript has started (seen with wrangler 4.86 and curl). The in-memory broker also lives in one
 * isolate only; pipes across isolates need a shared backend (Redis, or a Durable Object).
 */
const app = createApp(parseConfig({}));

export default app;
