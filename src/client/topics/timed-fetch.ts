import type { TransferClock } from '../transfer-events.js';

/** A request that did not answer (headers and whole body) within its time. */
export class RequestTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(ms: number) {
    super(`no whole answer within ${Math.round(ms / 1000)} s`);
    this.name = 'RequestTimeoutError';
  }
}

/** An answer's body over the bound the caller set. */
export class AnswerTooLargeError extends Error {
  readonly code = 'ETOOLARGE';
  constructor(limit: number) {
    super(`the answer is over ${limit} bytes`);
    this.name = 'AnswerTooLargeError';
  }
}

/** Options of `timedFetch`. */
export interface TimedFetchOptions {
  readonly fetch: typeof fetch;
  readonly clock: TransferClock;
  /** The whole request, body read included, must end within this. */
  readonly timeoutMs: number;
  /** Bytes of the body read at most. */
  readonly maxBodyBytes: number;
  /** The caller gave up. */
  readonly signal?: AbortSignal;
}

/**
 * One request with its whole body read, within a time and a size: topic answers are small and whole (a
 * long-poll answers once), so the caller gets bytes, not a stream. Throws what fetch throws, a
 * `RequestTimeoutError` or an `AnswerTooLargeError`.
 */
export async function timedFetch(
  url: URL,
  init: RequestInit,
  options: TimedFetchOptions,
): Promise<{ readonly response: Response; readonly body: Uint8Array }> {
  const controller = new AbortController();
  const timer = new AbortController();
  const onOuterAbort = () => controller.abort(options.signal?.reason);
  options.signal?.throwIfAborted();
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  options.clock.sleep(options.timeoutMs, timer.signal).then(
    () => controller.abort(new RequestTimeoutError(options.timeoutMs)),
    () => {},
  );
  try {
    const response = await options.fetch(url, { ...init, signal: controller.signal });
    const body = await readBounded(response, options.maxBodyBytes);
    return { response, body };
  } catch (error) {
    // fetch reports our own abort as an AbortError: say why it was aborted instead.
    if (controller.signal.aborted) throw controller.signal.reason;
    throw error;
  } finally {
    timer.abort();
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

async function readBounded(response: Response, limit: number): Promise<Uint8Array> {
  const reader = response.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const pieces: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new AnswerTooLargeError(limit);
    }
    pieces.push(value);
  }
  if (pieces.length === 1) return pieces[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.byteLength;
  }
  return out;
}
