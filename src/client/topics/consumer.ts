import { z } from 'zod';
import { NAMESPACE_WILDCARD, NDJSON_TYPE } from '../../protocol/topic-layout.js';
import { GaveUpError, IntegrityError, RefusedError } from '../errors.js';
import { type ChunkCipherFactory, FormatError, type KeySource } from '../format/index.js';
import { reasonOf } from '../http-reason.js';
import { describe } from '../network-error.js';
import { Backoff, retryAfterMs, retryableStatus } from '../retry-policy.js';
import { isSealed, openBatch } from './batch-seal.js';
import type { TopicRequestOptions } from './publisher.js';
import { timedFetch } from './timed-fetch.js';
import { ackUrl } from './topic-url.js';

/** One record as a consumer's handler gets it (a sealed batch's records share its topic and id). */
export interface ConsumedRecord {
  readonly topic: string;
  readonly id: string;
  readonly data: Uint8Array;
  readonly deliveries: number;
}

/** Everything `consume` needs; the CLI builds it. */
export interface ConsumeOptions extends TopicRequestOptions {
  /** The topic's or namespace's (`<prefix>/*`) URL. */
  readonly url: URL;
  readonly group: string;
  readonly consumer: string;
  /** Records per read (1 to 1000). */
  readonly count: number;
  /** The long-poll wait of a read. */
  readonly waitMs: number;
  readonly start?: 'earliest' | 'latest';
  /** Opens sealed batches (a record that is not sealed is handed on as it is). */
  readonly key?: KeySource;
  readonly cipher?: ChunkCipherFactory;
  /** Bytes of one answer read at most. */
  readonly maxAnswerBytes: number;
  /**
   * Handles one answer's records, in order; true acknowledges them all, false leaves them pending (the
   * next read hands them out again, after a backoff).
   */
  readonly handle: (records: ConsumedRecord[]) => Promise<boolean>;
  /** Stop once a read answers with no record (a drain), instead of reading on. */
  readonly once?: boolean;
}

/** How a consume ended (`once`, or the signal). */
export interface ConsumeResult {
  readonly batches: number;
  readonly records: number;
}

const line = z.object({
  topic: z.string(),
  id: z.string(),
  data: z.string().optional(),
  data64: z.string().optional(),
  deliveries: z.number().int().nonnegative().default(1),
});

/** An answer we could not read: retried like a network error (a proxy may have mangled it). */
class BadAnswerError extends Error {}

/**
 * Reads records as one consumer of a group, hands each answer on, and acknowledges it once handled: a long
 * poll, then the handler, then the ack (retried until the server has it, so a record is not handed out
 * again because an ack was lost). Errors of the network and the server back off with jitter; a handler
 * that fails backs off too, and gets the same records again.
 * @throws RefusedError (a 4xx: a bad group name, a token without `recv`), GaveUpError, IntegrityError
 */
export async function consume(options: ConsumeOptions): Promise<ConsumeResult> {
  const { clock } = options;
  const backoff = new Backoff(options.retry, () => clock.now(), options.random);
  // A handler that keeps failing is not helped by reads that work: its own budget, reset only when it
  // succeeds, so `--retry-for` ends a consumer whose command always fails.
  const handling = new Backoff(options.retry, () => clock.now(), options.random);
  let batches = 0;
  let records = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    let answer: ConsumedRecord[];
    try {
      answer = await read(options);
    } catch (error) {
      await pauseAfter(error, options, backoff);
      continue;
    }
    backoff.progressed();
    if (answer.length === 0) {
      if (options.once) return { batches, records };
      continue;
    }
    const handed = await expand(answer, options);
    if (!(await options.handle(handed))) {
      await pauseAfter(new Error('the handler failed; the records stay pending'), options, handling);
      continue;
    }
    handling.progressed();
    await ackAll(answer, options, backoff);
    batches += 1;
    records += handed.length;
  }
}

/** The read URL with its parameters. */
function readUrl(options: ConsumeOptions): URL {
  const url = new URL(options.url);
  url.searchParams.set('group', options.group);
  url.searchParams.set('consumer', options.consumer);
  url.searchParams.set('count', String(options.count));
  url.searchParams.set('wait', String(Math.round(options.waitMs)));
  if (options.start) url.searchParams.set('start', options.start);
  return url;
}

async function read(options: ConsumeOptions): Promise<ConsumedRecord[]> {
  const { response, body } = await timedFetch(
    readUrl(options),
    {
      method: 'GET',
      headers: [...options.headers, ['Accept', NDJSON_TYPE]] as Array<[string, string]>,
    },
    {
      ...options,
      timeoutMs: options.waitMs + options.requestTimeoutMs,
      maxBodyBytes: options.maxAnswerBytes,
    },
  );
  if (!response.ok) throw await statusError(response, body);
  const out: ConsumedRecord[] = [];
  for (const text of new TextDecoder().decode(body).split('\n')) {
    if (text.trim() === '') continue;
    let parsed: z.infer<typeof line>;
    try {
      parsed = line.parse(JSON.parse(text));
    } catch {
      throw new BadAnswerError(`an answer line is not a record: ${text.slice(0, 80)}`);
    }
    const data =
      parsed.data !== undefined
        ? new TextEncoder().encode(parsed.data)
        : Uint8Array.from(atob(parsed.data64 ?? ''), (c) => c.charCodeAt(0));
    out.push({ topic: parsed.topic, id: parsed.id, data, deliveries: parsed.deliveries });
  }
  return out;
}

/** Sealed records opened into the records they hold, in place. */
async function expand(answer: ConsumedRecord[], options: ConsumeOptions): Promise<ConsumedRecord[]> {
  const { key } = options;
  if (!key) return answer;
  const out: ConsumedRecord[] = [];
  for (const record of answer) {
    if (!isSealed(record.data)) {
      out.push(record);
      continue;
    }
    try {
      const inner = await openBatch(record.data, key, options.cipher ? { cipher: options.cipher } : {});
      for (const data of inner) out.push({ ...record, data });
    } catch (error) {
      if (!(error instanceof FormatError)) throw error;
      throw new IntegrityError(`record ${record.topic} ${record.id}: ${error.message}`, { cause: error });
    }
  }
  return out;
}

/** Acknowledges an answer's records, retrying until the server has the ack. */
async function ackAll(answer: ConsumedRecord[], options: ConsumeOptions, backoff: Backoff): Promise<void> {
  const namespace = options.url.pathname.endsWith(NAMESPACE_WILDCARD);
  const body = `${answer.map((r) => (namespace ? `${r.topic} ${r.id}` : r.id)).join('\n')}\n`;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const { response, body: answerBody } = await timedFetch(
        ackUrl(options.url, options.group),
        {
          method: 'POST',
          headers: [...options.headers, ['Content-Type', 'text/plain']] as Array<[string, string]>,
          body,
        },
        { ...options, timeoutMs: options.requestTimeoutMs, maxBodyBytes: 64 * 1024 },
      );
      if (response.ok) return;
      throw await statusError(response, answerBody);
    } catch (error) {
      await pauseAfter(error, options, backoff);
    }
  }
}

/** A refusal for good, or a retryable failure with the server's wait. */
async function statusError(response: Response, body: Uint8Array): Promise<Error> {
  const why = await reasonOf(new Response(body as BodyInit, { statusText: response.statusText }));
  if (!retryableStatus(response.status)) return new RefusedError(response.status, why);
  return Object.assign(new Error(`${response.status} ${why}`), {
    retryAfter: response.headers.get('Retry-After'),
  });
}

/** Rethrows what is final; otherwise waits the next backoff step (or gives up when the budget is spent). */
async function pauseAfter(error: unknown, options: ConsumeOptions, backoff: Backoff): Promise<void> {
  if (error instanceof RefusedError || error instanceof IntegrityError || options.signal?.aborted)
    throw error;
  const reason = error instanceof BadAnswerError ? error.message : describe(error);
  const retryAfter = (error as { retryAfter?: string | null }).retryAfter ?? null;
  const waitMs = backoff.next(retryAfterMs(retryAfter, options.clock.now()));
  if (waitMs === undefined) throw new GaveUpError(`gave up after ${backoff.attempts} tries: ${reason}`);
  options.onEvent?.({ type: 'retrying', reason, inMs: Math.round(waitMs), attempt: backoff.attempts });
  await options.clock.sleep(waitMs, options.signal);
}
