import { Hono } from 'hono';
import { renderMetrics } from '../selfheal/prometheus.js';
import { VERSION } from '../version.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { refuse } from './guard-requests.js';
import { PAGE_SCRIPT } from './page-script.generated.js';
import { helpText, indexCsp, indexPage, noscriptCsp, noscriptPage } from './pages.js';
import { RESERVED_PATHS } from './reserved-paths.js';

// Bare types, as piping-server sends them (its clients compare the type exactly): the text pages are ASCII,
// the HTML pages declare `<meta charset="utf-8">`.
const TEXT = 'text/plain';
const HTML = 'text/html';

const encoder = new TextEncoder();

/** The page's script (`src/page/`, bundled at build). */
const PAGE_SCRIPT_PATH = '/_/page.js';

/**
 * A page with its Content-Length: a HEAD answers with GET's headers (Hono copies them), and only a length
 * given here reaches a HEAD, whose body is empty.
 */
function page(body: string, headers: Record<string, string>): Response {
  return new Response(body, {
    headers: { ...headers, 'Content-Length': String(encoder.encode(body).byteLength) },
  });
}

/** A CSP nonce: 128 random bits, new for every page (https://www.w3.org/TR/CSP3/#security-nonces). */
function freshNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes));
}

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
  app.get(RESERVED_PATHS.index, () => {
    const nonce = freshNonce();
    return page(indexPage(nonce), { 'Content-Type': HTML, 'Content-Security-Policy': indexCsp(nonce) });
  });
  app.get(PAGE_SCRIPT_PATH, () =>
    page(PAGE_SCRIPT, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache' }),
  );
  app.get(RESERVED_PATHS.noscript, (c) => {
    const nonce = freshNonce();
    return page(noscriptPage(c.req.query('path') ?? null, nonce), {
      'Content-Type': HTML,
      'Content-Security-Policy': noscriptCsp(nonce),
    });
  });
  app.get(RESERVED_PATHS.help, (c) =>
    page(helpText(publicBaseUrl(c.req.raw), deps.config.auth.mode), { ...CORS_ORIGIN, 'Content-Type': TEXT }),
  );
  app.get(RESERVED_PATHS.version, () => page(`${VERSION}\n`, { ...CORS_ORIGIN, 'Content-Type': TEXT }));
  app.get(RESERVED_PATHS.favicon, (c) => c.body(null, 204));
  // Crawlers must stay out: a crawler's GET on a pipe path would take a receiver slot.
  app.get(RESERVED_PATHS.robots, () => page('User-agent: *\nDisallow: /\n', { 'Content-Type': TEXT }));
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
  app.get('/_/health', (c) => {
    const { unavailable, ...broker } = deps.broker.stats();
    if (unavailable) {
      return c.json({ status: 'unavailable', reason: unavailable, version: VERSION, broker }, 503, {
        ...CORS_ORIGIN,
      });
    }
    return c.json({ status: 'ok', version: VERSION, broker }, 200, { ...CORS_ORIGIN });
  });
  return app;
}
