import { IDEMPOTENCY_KEY_HEADER, RECORDS_TYPE } from '../../protocol/topic-layout.js';
import { GaveUpError, RefusedError } from '../errors.js';
import { reasonOf } from '../http-reason.js';
import { describe } from '../network-error.js';
import { Backoff, type RetryOptions, retryAfterMs, retryableStatus } from '../retry-policy.js';
import type { TransferClock } from '../transfer-events.js';
import { timedFetch } from './timed-fetch.js';
import type { TopicEvent } from './topic-events.js';

/** What every topic request needs; the CLI builds it. */
export interface TopicRequestOptions {
  /** Request headers: Authorization, ... */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly fetch: typeof fetch;
  readonly retry: RetryOptions;
  readonly clock: TransferClock;
  readonly random?: () => number;
  /** One request, its answer read, ends within this (a read adds its long-poll wait). */
  readonly requestTimeoutMs: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: TopicEvent) => void;
}

/** One batch as it is sent: its framed (or sealed) body and its idempotency key. */
export interface OutgoingBatch {
  /** `<device-id>:<sequence>`. */
  readonly key: string;
  /** Length-prefixed records (`application/vnd.edgepipe.records`). */
  readonly body: Uint8Array;
  readonly records: number;
}

/** The server's answer to an append. */
export interface AppendAnswer {
  readonly count: number;
  readonly first: string;
  readonly last: string;
  readonly replay: boolean;
}

/** Answers are a line of JSON; anything much larger is not an append's answer. */
const MAX_APPEND_ANSWER = 64 * 1024;

/**
 * gzip's output of `body` (`CompressionStream`, on every runtime and in browsers), or undefined when it
 * would not be smaller (a few short records).
 */
export async function gzipped(body: Uint8Array): Promise<Uint8Array | undefined> {
  const stream = new Blob([body as BlobPart]).stream().pipeThrough(new CompressionStream('gzip'));
  const out = new Uint8Array(await new Response(stream).arrayBuffer());
  return out.byteLength < body.byteLength ? out : undefined;
}

/**
 * Appends one batch to the topic at `url`, trying until the server stores it: network errors, timeouts,
 * 408, 429 and 5xx are retried with backoff and jitter; a retry is safe because the idempotency key makes
 * the server answer a batch it has already stored without storing it again.
 * @throws RefusedError (any other 4xx: the caller decides), GaveUpError (the retry budget is spent)
 */
export async function publishBatch(
  options: TopicRequestOptions,
  url: URL,
  batch: OutgoingBatch,
  gzip: boolean,
): Promise<AppendAnswer> {
  const { clock, onEvent = () => {} } = options;
  const compressed = gzip ? await gzipped(batch.body) : undefined;
  const headers: Array<readonly [string, string]> = [
    ...options.headers,
    ['Content-Type', RECORDS_TYPE],
    [IDEMPOTENCY_KEY_HEADER, batch.key],
  ];
  if (compressed) headers.push(['Content-Encoding', 'gzip']);
  const body = compressed ?? batch.body;
  const backoff = new Backoff(options.retry, () => clock.now(), options.random);
  for (;;) {
    options.signal?.throwIfAborted();
    let reason: string;
    let serverWait: number | undefined;
    try {
      const { response, body: answer } = await timedFetch(
        url,
        { method: 'POST', headers: headers as Array<[string, string]>, body: body as BodyInit },
        { ...options, timeoutMs: options.requestTimeoutMs, maxBodyBytes: MAX_APPEND_ANSWER },
      );
      if (response.ok) {
        const parsed = parseAnswer(answer);
        onEvent({ type: 'published', key: batch.key, records: batch.records, replay: parsed.replay });
        return parsed;
      }
      const why = await reasonOf(new Response(answer as BodyInit, { statusText: response.statusText }));
      if (!retryableStatus(response.status)) throw new RefusedError(response.status, why);
      reason = `${response.status} ${why}`;
      serverWait = retryAfterMs(response.headers.get('Retry-After'), clock.now());
    } catch (error) {
      if (error instanceof RefusedError || options.signal?.aborted) throw error;
      reason = describe(error);
    }
    const waitMs = backoff.next(serverWait);
    if (waitMs === undefined) {
      throw new GaveUpError(`gave up on batch ${batch.key} after ${backoff.attempts} tries: ${reason}`);
    }
    onEvent({ type: 'retrying', reason, inMs: Math.round(waitMs), attempt: backoff.attempts });
    await clock.sleep(waitMs, options.signal);
  }
}

function parseAnswer(body: Uint8Array): AppendAnswer {
  try {
    const json = JSON.parse(new TextDecoder().decode(body)) as Partial<AppendAnswer>;
    return {
      count: Number(json.count ?? 0),
      first: String(json.first ?? ''),
      last: String(json.last ?? ''),
      replay: json.replay === true,
    };
  } catch {
    // The batch is stored (2xx); an answer we cannot read changes nothing for the sender.
    return { count: 0, first: '', last: '', replay: false };
  }
}
