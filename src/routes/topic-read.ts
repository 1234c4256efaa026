import { compareIds } from '../broker/topic-bounds.js';
import type { ReadOptions, TopicRecord, TopicStore } from '../broker/topic-types.js';
import type { ByteSource } from '../byte-source.js';
import { HEARTBEAT_MS, type TopicRecordLine } from '../protocol/topic-layout.js';

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function base64Of(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.byteLength; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** A record as its NDJSON line's object: `data` when it is valid UTF-8, else `data64`. */
export function lineOf(record: TopicRecord): TopicRecordLine {
  let text: string | undefined;
  try {
    text = strictUtf8.decode(record.data);
  } catch {
    text = undefined;
  }
  return {
    topic: record.topic,
    id: record.id,
    ...(text === undefined ? { data64: base64Of(record.data) } : { data: text }),
    deliveries: record.deliveries,
  };
}

/** Records as NDJSON (one line each, `\n` after every line). */
export function ndjsonOf(records: readonly TopicRecord[]): string {
  return records.map((record) => `${JSON.stringify(lineOf(record))}\n`).join('');
}

/** Records as server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html). */
export function eventsOf(records: readonly TopicRecord[]): string {
  return records
    .map(
      (record) =>
        `event: record\nid: ${record.topic} ${record.id}\ndata: ${JSON.stringify(lineOf(record))}\n\n`,
    )
    .join('');
}

/**
 * A follow stream (`follow=1`, or SSE) as a pull-based source: each pull is one read that waits up to the
 * heartbeat interval, so a silent topic yields a heartbeat every 15 s and a client that stops reading
 * stops the reads (backpressure). Records already sent on this connection and still pending are not sent
 * again (`deliveredUpTo`, one id per topic, so bounded by the topics read).
 */
export function followSource(
  store: TopicStore,
  read: Omit<ReadOptions, 'waitMs' | 'signal' | 'deliveredUpTo'>,
  format: 'ndjson' | 'sse',
  signal: AbortSignal,
): ByteSource {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const delivered = new Map<string, string>();
  let first = true;
  return {
    async read() {
      if (stop.signal.aborted) return null;
      if (first) {
        first = false;
        // A heartbeat first: runtimes send the head with the first bytes, and a client waits for the head.
        return encoder.encode(format === 'sse' ? ': follow\n\n' : '\n');
      }
      first = false;
      const records = await store.read({
        ...read,
        waitMs: HEARTBEAT_MS,
        signal: stop.signal,
        deliveredUpTo: delivered,
      });
      if (stop.signal.aborted) return null;
      // The store leaves out this consumer's own records sent before; claimed ones of others may be older.
      for (const record of records) {
        const upTo = delivered.get(record.topic);
        if (upTo === undefined || compareIds(record.id, upTo) > 0) delivered.set(record.topic, record.id);
      }
      if (records.length === 0) return encoder.encode(format === 'sse' ? ': heartbeat\n\n' : '\n');
      return encoder.encode(format === 'sse' ? eventsOf(records) : ndjsonOf(records));
    },
    cancel() {
      signal.removeEventListener('abort', onAbort);
      stop.abort();
    },
  };
}
