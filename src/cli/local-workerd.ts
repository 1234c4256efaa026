// A Worker of a wrangler.toml served by workerd (through Miniflare, the library wrangler dev runs it with)
// on the address asked for, with nothing in front. wrangler dev puts a proxy Worker of its own before the
// Worker, for reloads and live reload, and that proxy (measured here, wrangler 4.86, issue 16):
// - re-chunks a chunked upload into pieces of 24 and 4072 bytes: 20-36 MiB/s through a Durable Object,
//   against 142-154 MiB/s served directly;
// - tells the Worker late or never that a client left: in a probe where workerd alone cancelled the stream
//   of a receiver of n > 1 that aborted at once, behind the proxy the others stalled until the idle timeout;
// - answers its own 503 "Your worker restarted mid-request" for a POST or PUT whose connection it lost,
//   though nothing restarted.
// Deployed Workers have none of it. The bundle is wrangler's own (`wrangler deploy --dry-run`: the same
// esbuild and nodejs_compat polyfills as a deploy), the bindings and compatibility settings its reading of
// wrangler.toml (`unstable_getMiniflareWorkerOptions`).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { processAlive } from './process-alive.js';

/** What to serve, and where. */
export interface LocalWorkerOptions {
  /** The Worker's wrangler.toml. */
  readonly config: string;
  /** Plain-text bindings (vars), as `--var` gives them. */
  readonly vars?: Readonly<Record<string, string>>;
  readonly host: string;
  /** 0 for any free port. */
  readonly port: number;
  /** Serves `/cdn-cgi/handler/scheduled?cron=…`, which runs the `scheduled` handler. */
  readonly triggerHandlers?: boolean;
  /**
   * Miniflare's line per request (`GET /path 200 OK (2ms)`). Off by default: workerd sends each line to
   * this process as an HTTP request of its own (Miniflare's loopback service), which doubled the CPU of a
   * small transfer (1 KiB through a Durable Object: 2.0–2.6 → 3.3–4.2 ms across workerd and Node) and added
   * 0.5–0.8 ms to its p50 (issue 16). Deployed Workers have no such hop.
   */
  readonly logRequests?: boolean;
}

/** A Worker being served; `dispose` stops workerd and removes the bundle. */
export interface LocalWorker {
  readonly url: URL;
  dispose(): Promise<void>;
}

/** How long wrangler may take to bundle the Worker (3 s here). */
const BUNDLE_TIMEOUT_MS = 120_000;

/** The wrangler CLI of this install. */
export function wranglerBin(): string {
  return join(dirname(createRequire(import.meta.url).resolve('wrangler/package.json')), 'bin/wrangler.js');
}

/**
 * Bundles the Worker of `config` into `outdir` (index.js) as `wrangler deploy` would, offline.
 * @throws Error with wrangler's own output when it fails or takes longer than `BUNDLE_TIMEOUT_MS`.
 */
function bundle(config: string, outdir: string): Promise<void> {
  const args = [wranglerBin(), 'deploy', '--dry-run', '--config', config, '--outdir', outdir];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8192);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), BUNDLE_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(
          new Error(`wrangler could not bundle ${config} (${signal ?? `exit ${code}`}):\n${output.trim()}`),
        );
    });
  });
}

/** The bundle directories' prefix in the temp directory; the pid of the process that made one follows. */
const BUNDLE_PREFIX = 'edgepipe-worker-';

/**
 * Removes the bundles (5 MB each) of processes that died without removing them (a SIGKILL, as test
 * harnesses send, skips `dispose`) from `dir`. Returns the names removed.
 */
export function removeStaleBundles(dir: string = tmpdir()): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(BUNDLE_PREFIX)) continue;
    const pid = Number(/^(\d+)-/.exec(name.slice(BUNDLE_PREFIX.length))?.[1]);
    if (!pid || processAlive(pid)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Serves the Worker of `options.config` on workerd at `options.host`:`options.port`, inspector off,
 * nothing persisted (Durable Objects live in memory).
 */
export async function serveWorker(options: LocalWorkerOptions): Promise<LocalWorker> {
  removeStaleBundles();
  const outdir = mkdtempSync(join(tmpdir(), `${BUNDLE_PREFIX}${process.pid}-`));
  try {
    await bundle(options.config, outdir);
    const { unstable_getMiniflareWorkerOptions } = await import('wrangler');
    const { Log, LogLevel, Miniflare } = await import('miniflare');
    const { workerOptions } = unstable_getMiniflareWorkerOptions(options.config);
    const miniflare = new Miniflare({
      ...workerOptions,
      modules: true,
      modulesRoot: outdir,
      scriptPath: join(outdir, 'index.js'),
      bindings: { ...workerOptions.bindings, ...options.vars },
      host: options.host,
      port: options.port,
      // Offline: the placeholder `request.cf`, not one fetched from Cloudflare.
      cf: false,
      unsafeTriggerHandlers: options.triggerHandlers ?? false,
      // Miniflare's own lines (errors) and the Worker's console, on stdout and stderr.
      log: new Log(LogLevel.INFO),
      logRequests: options.logRequests ?? false,
    } as ConstructorParameters<typeof Miniflare>[0]);
    const url = await miniflare.ready;
    // Miniflare prints its `Ready on <url>` only with the request log on; scripts wait for the line.
    if (!options.logRequests) console.log(`Ready on ${url.href}`);
    return {
      url,
      dispose: async () => {
        await miniflare.dispose();
        rmSync(outdir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(outdir, { recursive: true, force: true });
    throw error;
  }
}
