/**
 * The topic protocol's constants and names (docs/topic-protocol.md), shared by the server's routes and the
 * client, so both read one definition. Web standards only.
 */

/** Where every topic lives; no pipe can use it (pipes may not start with `/_/`). */
export const TOPICS_PREFIX = '/_/topics/';

/** One segment of a topic name: 1 to 64 of `A-Z a-z 0-9 . _ ~ -`, not `.` or `..` (checked apart). */
export const TOPIC_SEGMENT = /^[A-Za-z0-9._~-]{1,64}$/;
/** A topic name has at most this many segments. */
export const MAX_TOPIC_SEGMENTS = 8;
/** A topic name has at most this many characters. */
export const MAX_TOPIC_NAME_CHARS = 200;

/** A group or consumer name: the characters of a segment. */
export const TOPIC_MEMBER_NAME = TOPIC_SEGMENT;

/** Batch framings of an append (`Content-Type`); text/plain and anything unnamed read as NDJSON. */
export const NDJSON_TYPE = 'application/x-ndjson';
export const RECORDS_TYPE = 'application/vnd.edgepipe.records';
export const EVENT_STREAM_TYPE = 'text/event-stream';

/** Bytes of the big-endian length before each record of the binary framing. */
export const RECORD_LENGTH_BYTES = 4;

export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';
/** 1 to 200 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** Headers of `HEAD /_/topics/<name>`. */
export const TOPIC_HEADERS = {
  records: 'Topic-Records',
  bytes: 'Topic-Bytes',
  firstId: 'Topic-First-Id',
  lastId: 'Topic-Last-Id',
  maxRecords: 'Topic-Max-Records',
  maxBytes: 'Topic-Max-Bytes',
  maxAge: 'Topic-Max-Age',
  dropped: 'Topic-Dropped',
} as const;

/**
 * A long-poll answer's count of records (0: it waited in vain). The per-client rate limit charges such a
 * read, as it charges a pipe request that met nobody; one that delivered costs nothing.
 */
export const DELIVERED_HEADER = 'Topic-Delivered';

/** Read parameters and their bounds. */
export const READ_DEFAULTS = { count: 100, maxCount: 1000, waitMs: 20_000 } as const;

/** A follow stream writes an empty line (SSE: a comment) this often, so proxies keep it open. */
export const HEARTBEAT_MS = 15_000;

/** The action suffix of an acknowledgement: `POST /_/topics/<name>:ack`. */
export const ACK_ACTION = 'ack';

/** The wildcard of a namespace read: `<prefix>/*`. */
export const NAMESPACE_WILDCARD = '/*';

/** Whether `name` is a topic name (segments, lengths, no `.`/`..`). */
export function isTopicName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_TOPIC_NAME_CHARS) return false;
  const segments = name.split('/');
  if (segments.length > MAX_TOPIC_SEGMENTS) return false;
  return segments.every((segment) => TOPIC_SEGMENT.test(segment) && segment !== '.' && segment !== '..');
}

/** The namespace of a topic or prefix: its first segment. */
export function namespaceOf(name: string): string {
  const slash = name.indexOf('/');
  return slash === -1 ? name : name.slice(0, slash);
}

/** Whether `topic` is below `prefix` (segment-wise: `fleet` holds `fleet/a`, not `fleetx/a` nor itself). */
export function isBelow(topic: string, prefix: string): boolean {
  return topic.startsWith(`${prefix}/`);
}

/** The URL path of a topic or of a namespace read (`<prefix>/*`), with an optional action. */
export function topicPath(name: string, action?: string): string {
  return `${TOPICS_PREFIX}${name}${action ? `:${action}` : ''}`;
}

/** One record as a consumer reads it (one NDJSON line, or an SSE event's data). */
export interface TopicRecordLine {
  readonly topic: string;
  readonly id: string;
  /** The record as text when it is valid UTF-8. */
  readonly data?: string;
  /** Otherwise the record in base64. */
  readonly data64?: string;
  readonly deliveries: number;
}

/** What an append answers (JSON). */
export interface AppendAnswer {
  readonly topic: string;
  readonly count: number;
  readonly first: string;
  readonly last: string;
  readonly replay: boolean;
}
