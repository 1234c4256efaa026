import type { TopicBounds } from './topic-types.js';

/** One `topics.retention` entry. */
export interface RetentionEntry extends TopicBounds {
  readonly namespace: string;
}

/**
 * The retention bound of a topic: the entry with the longest `namespace` that is the topic or a prefix of
 * it on segment boundaries (`""` matches all). Without a match (a config with no `""`), the tightest of
 * all entries, so a topic is never unbounded.
 */
export function retentionOf(entries: readonly RetentionEntry[]): (topic: string) => TopicBounds {
  const sorted = [...entries].sort((a, b) => b.namespace.length - a.namespace.length);
  const fallback: TopicBounds = {
    maxRecords: Math.min(...entries.map((entry) => entry.maxRecords), 100_000),
    maxBytes: Math.min(...entries.map((entry) => entry.maxBytes), 64 * 1024 * 1024),
    maxAgeMs: Math.min(...entries.map((entry) => entry.maxAgeMs), 7 * 24 * 3600_000),
  };
  return (topic) => {
    const entry = sorted.find(
      ({ namespace }) => namespace === '' || topic === namespace || topic.startsWith(`${namespace}/`),
    );
    return entry
      ? { maxRecords: entry.maxRecords, maxBytes: entry.maxBytes, maxAgeMs: entry.maxAgeMs }
      : fallback;
  };
}

/** A record id `<ms>-<seq>` as two numbers (ms fits a double; seq stays small in practice). */
export function parseId(id: string): readonly [number, number] {
  const dash = id.indexOf('-');
  return dash === -1 ? [Number(id), 0] : [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

/** Orders record ids: negative when `a` is older than `b`. */
export function compareIds(a: string, b: string): number {
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  return am === bm ? as - bs : am - bm;
}

/** Whether `id` is a record id as the protocol writes it. */
export const RECORD_ID = /^[0-9]{1,20}-[0-9]{1,20}$/;
