/**
 * The topic protocol's names, shared by the routes and the client (docs/topic-protocol.md): where topics
 * live, what a name may be, the headers, content types and query parameters of each request.
 */

/** Every topic's path starts here; no pipe may (pipes never start with `/_/`). */
export const TOPICS_PATH = '/_/topics/';

/** One segment of a topic name: 1 to 64 of `A-Z a-z 0-9 . _ ~ -`, not `.` or `..` (checked apart). */
export const TOPIC_SEGMENT = /^[A-Za-z0-9._~-]{1,64}$/;
/** Segments a topic name has at most. */
export const MAX_TOPIC_SEGMENTS = 8;
/** Characters a whole topic name has at most. */
export const MAX_TOPIC_NAME = 200;
/** What a namespace read ends with: `fleet/*` reads every topic below `fleet/`. */
export const NAMESPACE_WILDCARD = '/*';
/** The action suffix of an acknowledgement: `POST /_/topics/<name>:ack`. */
export const ACK_SUFFIX = ':ack';

/** The header that makes an append idempotent; the client sends `<device-id>:<batch-sequence>`. */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';
/** An idempotency key: 1 to 200 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** A batch of length-prefixed records: each a 4-byte big-endian length, then that many bytes. */
export const RECORDS_CONTENT_TYPE = 'application/vnd.edgepipe.records';
/** A batch (append) or an answer (read) of one record per line. */
export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';
/** Bytes of a record's length prefix. */
export const RECORD_PREFIX_BYTES = 4;

/** The query parameters of a read (and `group` of an ack). */
export const READ_PARAMS = {
  group: 'group',
  consumer: 'consumer',
  count: 'count',
  wait: 'wait',
  start: 'start',
  follow: 'follow',
} as const;

/** The headers of `HEAD /_/topics/<name>`. */
export const TOPIC_STATUS_HEADERS = {
  records: 'Topic-Records',
  bytes: 'Topic-Bytes',
  firstId: 'Topic-First-Id',
  lastId: 'Topic-Last-Id',
  maxRecords: 'Topic-Max-Records',
  maxBytes: 'Topic-Max-Bytes',
  maxAge: 'Topic-Max-Age',
  dropped: 'Topic-Dropped',
} as const;

/** Whether `name` is a topic name (not a namespace read). */
export function isTopicName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_TOPIC_NAME) return false;
  const segments = name.split('/');
  return (
    segments.length <= MAX_TOPIC_SEGMENTS &&
    segments.every((s) => TOPIC_SEGMENT.test(s) && s !== '.' && s !== '..')
  );
}

/** Whether `selector` is a topic name or `<prefix>/*` (what a read may name). */
export function isTopicSelector(selector: string): boolean {
  return selector.endsWith(NAMESPACE_WILDCARD)
    ? isTopicName(selector.slice(0, -NAMESPACE_WILDCARD.length))
    : isTopicName(selector);
}
