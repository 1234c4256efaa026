import { Hono } from 'hono';
import { renderMetrics } from '../selfheal/prometheus.js';
import { VERSION } from '../version.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { refuse } from './guard-requests.js';
import { helpText, indexPage, NOSCRIPT_CSP, noscriptPage } from './pages.js';
import { RESERVED_PATHS } from './reserved-paths.js';

const TEXT = 'text/plain; charset=utf-8';
const HTML = 'text/html; charset=utf-8';

/** The scheme and host this request reached us by, honouring a TLS-terminating proxy's X-Forwarded-Proto. */
function publicBaseUrl(request: Request): string {
  const url = new URL(request.url);
  const forwarded = request.headers.get('x-forwarded-proto');
  const scheme =
    forwarded?.split(',')[0]?.trim().toLowerCase() === 'https' ? 'https' : url.protocol.slice(0, -1);
  return `${scheme}://${url.host}`;
}

/** The reserved paths: pages, version, robots, favicon and edgepipe's own `/_/` endpoints. */
export function serverPages(deps: RouteDeps): Hono {
  const app = new Hono();
  app.get(RESERVED_PATHS.index, (c) => c.body(indexPage(), 200, { 'Content-Type': HTML }));
  app.get(RESERVED_PATHS.noscript, (c) =>
    c.body(noscriptPage(c.req.query('path') ?? null), 200, {
      'Content-Type': HTML,
      'Content-Security-Policy': NOSCRIPT_CSP,
    }),
  );
  app.get(RESERVED_PATHS.help, (c) =>
    c.body(helpText(publicBaseUrl(c.req.raw)), 200, { ...CORS_ORIGIN, 'Content-Type': TEXT }),
  );
  app.get(RESERVED_PATHS.version, (c) =>
    c.body(`${VERSION}\n`, 200, { ...CORS_ORIGIN, 'Content-Type': TEXT }),
  );
  app.get(RESERVED_PATHS.favicon, (c) => c.body(null, 204));
  // Crawlers must stay out: a crawler's GET on a pipe path would take a receiver slot.
  app.get(RESERVED_PATHS.robots, (c) =>
    c.body('User-agent: *\nDisallow: /\n', 200, { 'Content-Type': TEXT }),
  );
  app.get('/_/metrics', async (c) => {
    const refusal = await deps.access.checkAdmin(c.req.raw, 'metrics');
    if (refusal) refuse(refusal);
    return c.body(
      renderMetrics({
        windows: deps.latency,
        counters: deps.counters,
        broker: deps.broker.stats(),
        backend: deps.watcher?.backend ?? 'primary',
        watcher: deps.watcher?.counters,
      }),
      200,
      { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' },
    );
  });
  app.get('/_/selfheal', async (c) => {
    const refusal = await deps.access.checkAdmin(c.req.raw, 'selfheal');
    if (refusal) refuse(refusal);
    return c.json(
      deps.watcher
        ? await deps.watcher.status()
        : { backend: 'primary', rules: [], events: [], note: 'no self-heal watcher runs here' },
      200,
      { ...CORS_ORIGIN },
    );
  });
  app.get('/_/health', (c) =>
    c.json({ status: 'ok', version: VERSION, broker: deps.broker.stats() }, 200, { ...CORS_ORIGIN }),
  );
  return app;
}
