/**
 * Posting a self-heal event to a webhook: signed, retried with backoff, and bounded as a whole by the hook's
 * budget, so a slow or dead receiver never holds up the rule that fired it.
 */
import type { HookOutcome, SelfHealEvent } from './hook-types.js';

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2_000;
// Beyond a signed 32-bit delay, timers fire at once (Node warns), which would abort every attempt.
const MAX_TIMER_MS = 2_147_483_647;
// Keeps an odd error message (an HTML page in an exception, say) from bloating the audit line.
const MAX_DETAIL_CHARS = 300;

const encoder = new TextEncoder();

type Fetch = typeof fetch;
type Attempt = { readonly status: number } | { readonly error: string; readonly timedOut: boolean };

/**
 * POSTs `event` as JSON to `url` and reports what happened; never throws. Network errors, 5xx and 429 are
 * retried with jittered exponential backoff (100 ms doubling, capped at 2 s) while `timeoutMs` lasts, counted
 * from the call and covering signing, every attempt and every wait. Other statuses are final; redirects are not
 * followed, since following one would re-send (or, for 301/302, drop) the signed body to somewhere else.
 * With a `secret`, `X-Edgepipe-Signature: sha256=<hex>` carries the HMAC-SHA256 of the exact body bytes.
 */
export async function postWebhook(
  url: string,
  event: SelfHealEvent,
  options: { secret?: string; timeoutMs: number; fetch?: typeof fetch },
): Promise<HookOutcome> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const finish = (fields: Omit<HookOutcome, 'kind' | 'durationMs'>): HookOutcome => ({
    kind: 'webhook',
    durationMs: Date.now() - started,
    ...fields,
  });

  let target: URL;
  try {
    target = new URL(url);
  } catch {
    // The URL itself stays out of the detail: webhook URLs often carry a token in their path or query.
    return finish({ ok: false, attempts: 0, detail: 'invalid webhook URL' });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    return finish({ ok: false, attempts: 0, detail: `unsupported webhook URL scheme ${target.protocol}` });
  }
  if (!(options.timeoutMs > 0)) {
    return finish({ ok: false, attempts: 0, detail: `no attempt: timeout ${options.timeoutMs} ms` });
  }

  const body = encoder.encode(JSON.stringify(event));
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'User-Agent': 'edgepipe-selfheal',
    'X-Edgepipe-Event': 'selfheal',
  };
  if (options.secret) {
    try {
      headers['X-Edgepipe-Signature'] = `sha256=${await hmacSha256Hex(options.secret, body)}`;
    } catch (error) {
      return finish({ ok: false, attempts: 0, detail: `cannot sign the body: ${describeError(error)}` });
    }
  }

  // Wrapped rather than stored bare: some runtimes reject `fetch` called with a `this` other than the global.
  const send: Fetch = options.fetch ?? ((input, init) => fetch(input, init));
  const init: RequestInit = { method: 'POST', headers, body, redirect: 'manual' };
  let attempts = 0;
  let lastFailure = 'no attempt';
  let lastStatus: number | undefined;

  for (let remaining = deadline - Date.now(); remaining > 0; remaining = deadline - Date.now()) {
    attempts += 1;
    const result = await attemptOnce(send, target, init, remaining);
    if ('status' in result) {
      const { status } = result;
      if (status >= 200 && status < 300) {
        return finish({ ok: true, status, attempts, detail: `HTTP ${status} after ${count(attempts)}` });
      }
      if (!isRetryable(status)) {
        const why = status >= 300 && status < 400 ? 'redirect not followed' : 'not retried';
        return finish({ ok: false, status, attempts, detail: `HTTP ${status} (${why})` });
      }
      lastStatus = status;
      lastFailure = `HTTP ${status}`;
    } else {
      lastStatus = undefined;
      lastFailure = result.error;
      if (result.timedOut) break;
    }
    const wait = backoffMs(attempts);
    // An attempt after this wait would have no budget left: stop now instead of sleeping for nothing.
    if (Date.now() + wait >= deadline) break;
    await sleep(wait);
  }

  const durationMs = Date.now() - started;
  return {
    kind: 'webhook',
    ok: false,
    ...(lastStatus === undefined ? {} : { status: lastStatus }),
    attempts,
    durationMs,
    detail: `gave up after ${durationMs} ms: ${lastFailure} (${count(attempts)})`,
  };
}

/** One POST, aborted when `budgetMs` runs out; only the status matters, so the body is cancelled unread. */
async function attemptOnce(send: Fetch, url: URL, init: RequestInit, budgetMs: number): Promise<Attempt> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(
    () => {
      timedOut = true;
      controller.abort();
    },
    Math.min(budgetMs, MAX_TIMER_MS),
  );
  try {
    const response = await send(url, { ...init, signal: controller.signal });
    // Cancelling releases the connection; a failed cancel means the stream is already torn down, and the
    // outcome was settled by the status anyway.
    response.body?.cancel().catch(() => {});
    return { status: response.status };
  } catch (error) {
    if (timedOut) return { error: `no response within ${budgetMs} ms`, timedOut: true };
    return { error: describeError(error), timedOut: false };
  } finally {
    clearTimeout(timer);
  }
}

/** 429 and 5xx say "try again later"; any other status would come back the same. */
function isRetryable(status: number): boolean {
  return status === 429 || status >= 500;
}

/** The wait after `attempt` failures: doubling from 100 ms up to 2 s, minus up to a quarter at random so
 * instances that failed together do not retry in lockstep. */
function backoffMs(attempt: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (attempt - 1));
  return Math.round(ceiling * (1 - Math.random() * 0.25));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function count(attempts: number): string {
  return attempts === 1 ? '1 attempt' : `${attempts} attempts`;
}

async function hmacSha256Hex(secret: string, data: Uint8Array<ArrayBuffer>): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    encoder.encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, data));
  return Array.from(mac, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** One line for the audit trail; fetch's own message ("fetch failed") says little without its cause. */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return oneLine(String(error));
  const cause = causeOf(error.cause);
  return oneLine(cause && cause !== error.message ? `${error.message}: ${cause}` : error.message);
}

function causeOf(cause: unknown): string | undefined {
  if (!(cause instanceof Error)) return undefined;
  if (cause.message) return cause.message;
  // Happy-eyeballs connects fail with an AggregateError whose own message is empty.
  if (cause instanceof AggregateError && cause.errors[0] instanceof Error) return cause.errors[0].message;
  const code = (cause as { code?: unknown }).code;
  return typeof code === 'string' ? code : cause.name;
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > MAX_DETAIL_CHARS ? `${line.slice(0, MAX_DETAIL_CHARS - 1)}…` : line;
}
