import { ACK_ACTION, isTopicName, NAMESPACE_WILDCARD, TOPICS_PREFIX } from '../../protocol/topic-layout.js';
import { UsageError } from '../errors.js';

/**
 * A topic's URL: `<topic>` as a full URL (a signed one works as it is), or a topic name (`fleet/device-17`,
 * or `fleet/*` for a read) under `<server>/_/topics/`.
 */
export function topicUrl(topic: string, server: string | undefined): URL {
  if (/^https?:\/\//i.test(topic)) return new URL(topic);
  if (!server) {
    throw new UsageError(
      `'${topic}' is a topic name: give the broker with --server or EDGEPIPE_SERVER, or a full URL`,
    );
  }
  if (!isTopicSelector(topic)) {
    throw new UsageError(
      `'${topic}' is not a topic name: 1 to 8 segments of A-Z a-z 0-9 . _ ~ - joined by '/' (a read may end in '/*')`,
    );
  }
  const base = new URL(server);
  return new URL(`${base.pathname.replace(/\/+$/, '')}${TOPICS_PREFIX}${topic}`, base);
}

/** Whether `selector` is a topic name or `<prefix>/*` (what a read may name). */
export function isTopicSelector(selector: string): boolean {
  return isTopicName(
    selector.endsWith(NAMESPACE_WILDCARD) ? selector.slice(0, -NAMESPACE_WILDCARD.length) : selector,
  );
}

/** The acknowledgement URL of a read URL: `:ack` after the path, its query (a signature) kept. */
export function ackUrl(readUrl: URL, group: string): URL {
  const url = new URL(readUrl);
  url.pathname = `${url.pathname}:${ACK_ACTION}`;
  url.searchParams.set('group', group);
  return url;
}
