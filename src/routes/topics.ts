import type { Context } from 'hono';
import type { PipeAccess } from '../access/access-policy.js';
import { CapacityError, PipeError } from '../broker/errors.js';
import { RECORD_ID } from '../broker/topic-bounds.js';
import type { ReadOptions, TopicBounds, TopicStore } from '../broker/topic-types.js';
import {
  ACK_ACTION,
  DELIVERED_HEADER,
  EVENT_STREAM_TYPE,
  IDEMPOTENCY_KEY,
  IDEMPOTENCY_KEY_HEADER,
  isBelow,
  isTopicName,
  NAMESPACE_WILDCARD,
  NDJSON_TYPE,
  READ_DEFAULTS,
  TOPIC_HEADERS,
  TOPIC_MEMBER_NAME,
  TOPICS_PREFIX,
} from '../protocol/topic-layout.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { refuse } from './guard-requests.js';
import { fail, statusOfPipeError } from './http-error.js';
import { linesOf, readBoundedBody, recordsOf } from './topic-batch.js';
import { followSource, ndjsonOf } from './topic-read.js';

/** What a topic URL names: one topic, or every topic below a prefix (`<prefix>/*`), and an action. */
export interface TopicTarget {
  readonly topic?: string;
  readonly prefix?: string;
  readonly action?: string;
  /** The path access is checked on: `/_/topics/<name>`, or `/_/topics/<prefix>` for a namespace read. */
  readonly accessPath: string;
}

/** Parses the path below `/_/topics/` (400 for a bad name). */
export function topicTargetOf(pathname: string): TopicTarget {
  let rest = pathname.slice(TOPICS_PREFIX.length);
  let action: string | undefined;
  const colon = rest.indexOf(':');
  if (colon !== -1) {
    action = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const wildcard = rest.endsWith(NAMESPACE_WILDCARD);
  const name = wildcard ? rest.slice(0, -NAMESPACE_WILDCARD.length) : rest;
  if (!isTopicName(name)) {
    fail(
      400,
      `'${name.slice(0, 80)}' is not a topic name: 1 to 8 segments of A-Z a-z 0-9 . _ ~ - joined by /, at most 200 characters.`,
    );
  }
  return {
    ...(wildcard ? { prefix: name } : { topic: name }),
    ...(action !== undefined && { action }),
    accessPath: `${TOPICS_PREFIX}${name}`,
  };
}

const EXPOSED = Object.values(TOPIC_HEADERS).join(', ');

function memberParam(url: URL, name: 'group' | 'consumer'): string {
  const values = url.searchParams.getAll(name);
  if (values.length !== 1) fail(400, `${name} is required, once (e.g. ?group=ingest&consumer=worker-1).`);
  const value = values[0]!;
  if (!TOPIC_MEMBER_NAME.test(value)) {
    fail(400, `${name} should be 1 to 64 of A-Z a-z 0-9 . _ ~ -, but ${name} = '${value.slice(0, 64)}'.`);
  }
  return value;
}

function numberParam(url: URL, name: string, min: number, max: number, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const value = /^[0-9]{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= min && value <= max)) {
    fail(400, `${name} should be a whole number from ${min} to ${max}, but ${name} = '${raw.slice(0, 32)}'.`);
  }
  return value;
}

/** A store refusal as its HTTP answer: too many topics is 507 (the protocol's "a full broker"). */
function failWithStoreError(error: unknown): never {
  if (error instanceof CapacityError && (error.limit === 'topics' || error.limit === 'groups')) {
    fail(507, error.message);
  }
  if (error instanceof PipeError) fail(statusOfPipeError(error), error.message);
  throw error;
}

function boundsHeaders(bounds: TopicBounds): Record<string, string> {
  return {
    [TOPIC_HEADERS.maxRecords]: String(bounds.maxRecords),
    [TOPIC_HEADERS.maxBytes]: String(bounds.maxBytes),
    [TOPIC_HEADERS.maxAge]: String(Math.floor(bounds.maxAgeMs / 1000)),
  };
}

/**
 * The topic endpoints under `/_/topics/` (docs/topic-protocol.md): append, read (long-poll, follow, SSE),
 * ack and HEAD. Access is the pipe rules' on the path `/_/topics/<name>`. `store` is undefined where the
 * backend keeps no topics; every request is then answered 503 with `unavailable`.
 */
export function topicsRoute(
  deps: RouteDeps,
  store: TopicStore | undefined,
  boundsOf: (topic: string) => TopicBounds,
  unavailable: string,
) {
  const limits = deps.config.topics;

  async function check(c: Context, url: URL, target: TopicTarget, access: PipeAccess): Promise<void> {
    if (deps.access.open) return;
    const refusal = await deps.access.checkPipe(c.req.raw, url, target.accessPath, access);
    if (refusal) refuse(refusal);
  }

  async function append(c: Context, topic: string): Promise<Response> {
    const key = c.req.header(IDEMPOTENCY_KEY_HEADER);
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      fail(400, `${IDEMPOTENCY_KEY_HEADER} should be 1 to 200 visible ASCII characters.`);
    }
    const body = await readBoundedBody(
      deps.requestBody(c.req.raw, c.env),
      c.req.header('content-encoding') ?? null,
      limits.maxBatchBytes,
    );
    const records = recordsOf(body, c.req.header('content-type') ?? null, limits);
    const result = await store!
      .append({ topic, records, ...(key !== undefined && { idempotencyKey: key }) })
      .catch(failWithStoreError);
    return c.json({ topic, ...result }, result.replay ? 200 : 201, CORS_ORIGIN);
  }

  async function read(c: Context, url: URL, target: TopicTarget): Promise<Response> {
    const start = url.searchParams.get('start') ?? 'earliest';
    if (start !== 'earliest' && start !== 'latest') fail(400, `start should be earliest or latest.`);
    const follow = url.searchParams.get('follow');
    if (follow !== null && follow !== '0' && follow !== '1') fail(400, 'follow should be 0 or 1.');
    const options: Omit<ReadOptions, 'waitMs'> = {
      ...(target.topic !== undefined ? { topic: target.topic } : { prefix: target.prefix! }),
      group: memberParam(url, 'group'),
      consumer: memberParam(url, 'consumer'),
      count: numberParam(url, 'count', 1, READ_DEFAULTS.maxCount, READ_DEFAULTS.count),
      start,
    };
    const waitMs = numberParam(
      url,
      'wait',
      0,
      limits.maxWaitMs,
      Math.min(READ_DEFAULTS.waitMs, limits.maxWaitMs),
    );
    const sse = (c.req.header('accept') ?? '').includes(EVENT_STREAM_TYPE);
    const headers = { ...CORS_ORIGIN, 'Cache-Control': 'no-store' };
    if (follow === '1' || sse) {
      const source = followSource(store!, options, sse ? 'sse' : 'ndjson', c.req.raw.signal);
      return deps.streamResponse(source, {
        status: 200,
        headers: {
          ...headers,
          'Content-Type': sse ? `${EVENT_STREAM_TYPE}; charset=utf-8` : NDJSON_TYPE,
          // Proxies that buffer (nginx) pass a stream at once with this.
          'X-Accel-Buffering': 'no',
        },
      });
    }
    const records = await store!
      .read({ ...options, waitMs, signal: c.req.raw.signal })
      .catch(failWithStoreError);
    return c.body(ndjsonOf(records), 200, {
      ...headers,
      'Content-Type': NDJSON_TYPE,
      [DELIVERED_HEADER]: String(records.length),
      'Access-Control-Expose-Headers': DELIVERED_HEADER,
    });
  }

  async function ack(c: Context, url: URL, target: TopicTarget): Promise<Response> {
    const group = memberParam(url, 'group');
    const body = await readBoundedBody(
      deps.requestBody(c.req.raw, c.env),
      c.req.header('content-encoding') ?? null,
      limits.maxBatchBytes,
      'acknowledgement',
    );
    const decoder = new TextDecoder();
    const records = linesOf(body).map((line) => {
      const text = decoder.decode(line).trim();
      const [first, second, extra] = text.split(' ');
      const topic = target.topic ?? first!;
      const id = target.topic !== undefined ? first : second;
      if (
        extra !== undefined ||
        id === undefined ||
        !RECORD_ID.test(id) ||
        (target.topic !== undefined && second)
      ) {
        fail(
          400,
          target.topic !== undefined
            ? `Each line should be a record id (<ms>-<seq>), not '${text.slice(0, 80)}'.`
            : `Each line should be '<topic> <id>', not '${text.slice(0, 80)}'.`,
        );
      }
      if (target.prefix !== undefined && !(isTopicName(topic) && isBelow(topic, target.prefix))) {
        fail(400, `'${topic.slice(0, 80)}' is not a topic below ${target.prefix}.`);
      }
      return { topic, id };
    });
    if (records.length > limits.maxBatchRecords) {
      fail(413, `An acknowledgement lists at most ${limits.maxBatchRecords} records.`);
    }
    const acked = await store!.ack({ ...target, group, records }).catch(failWithStoreError);
    return c.json({ acked }, 200, CORS_ORIGIN);
  }

  async function head(topic: string): Promise<Response> {
    const status = await store!.status(topic).catch(failWithStoreError);
    const headers: Record<string, string> = {
      ...CORS_ORIGIN,
      'Access-Control-Expose-Headers': EXPOSED,
      'Cache-Control': 'no-store',
      [TOPIC_HEADERS.records]: String(status.records),
      [TOPIC_HEADERS.bytes]: String(status.bytes),
      [TOPIC_HEADERS.dropped]: String(status.dropped),
      ...boundsHeaders(boundsOf(topic)),
    };
    if (status.firstId !== undefined) headers[TOPIC_HEADERS.firstId] = status.firstId;
    if (status.lastId !== undefined) headers[TOPIC_HEADERS.lastId] = status.lastId;
    return new Response(null, { status: 200, headers });
  }

  return async function topics(c: Context): Promise<Response> {
    const url = new URL(c.req.url);
    const method = c.req.method;
    const target = topicTargetOf(url.pathname);
    if (target.action !== undefined && (target.action !== ACK_ACTION || method !== 'POST')) {
      fail(400, `Unknown action ':${target.action.slice(0, 40)}' (only POST ...:${ACK_ACTION}).`);
    }
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
      fail(405, `Unsupported method on a topic: ${method}.`, { Allow: 'GET, HEAD, POST, OPTIONS' });
    }
    const wants: PipeAccess =
      method === 'HEAD' ? 'inspect' : method === 'GET' || target.action ? 'recv' : 'send';
    await check(c, url, target, wants);
    if (!store) fail(503, unavailable);
    if (method === 'GET') return read(c, url, target);
    if (target.action === ACK_ACTION) return ack(c, url, target);
    if (target.topic === undefined)
      fail(400, `Only a read or an acknowledgement may name ${target.prefix}/*.`);
    return method === 'HEAD' ? head(target.topic) : append(c, target.topic);
  };
}
