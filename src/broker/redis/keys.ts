/**
 * Every key name of the Redis broker, built in one place. All keys of one pipe share the hash tag `{<path>}`,
 * so a pipe's multi-key scripts run on one Redis Cluster slot.
 */
export interface PipeKeys {
  /** Hash: state, n, sender, gen, headers. */
  readonly meta: string;
  /** Hash: receiver id → bytes it has read (-1 while waiting; the end frame counts as one more byte). */
  readonly readers: string;
  /** Hash: receiver id → the instance serving it, or `d:<ms>` since it dropped (resume grace). */
  readonly owners: string;
  /** Pub/Sub channel of the pipe's events (classic Pub/Sub: a cluster delivers it from any node). */
  readonly events: string;
  /** Stream of one transfer's frames; a new transfer on the same path gets a new generation. */
  data(generation: string): string;
}

export function pipeKeys(prefix: string, path: string): PipeKeys {
  const tag = `${prefix}{${path}}`;
  return {
    meta: `${tag}:m`,
    readers: `${tag}:r`,
    owners: `${tag}:o`,
    events: `${tag}:e`,
    data: (generation) => `${tag}:d:${generation}`,
  };
}

/** The key whose presence says that a broker instance is alive (it refreshes it every heartbeat). */
export function instanceKey(prefix: string, instanceId: string): string {
  return `${prefix}i:${instanceId}`;
}

/** Keys of one topic. All keys of a namespace share the hash tag `{<namespace>}`: one Cluster slot. */
export interface TopicKeys {
  /** Stream of the topic's records (field `d`). */
  readonly stream: string;
  /** Hash: bytes (of kept records), dropped (by retention), lastms (of the newest id). */
  readonly meta: string;
  /** String holding an append's answer for `idempotencyWindowMs` (`SET ... PX`). */
  idempotency(key: string): string;
}

export function topicKeys(prefix: string, namespace: string, topic: string): TopicKeys {
  const tag = `${prefix}{${namespace}}`;
  return {
    stream: `${tag}:ts:${topic}`,
    meta: `${tag}:tm:${topic}`,
    // A topic name never holds ':' (docs/topic-protocol.md), so the key cannot run into another topic's.
    idempotency: (key) => `${tag}:tk:${topic}:${key}`,
  };
}

/**
 * Keys of a namespace: its topic index (a set, bounded by `maxTopics`), its groups (hash: name → start), and
 * a stream of one entry that a new topic's first append writes, so that a waiting namespace read wakes for
 * a topic that did not exist when it began to wait.
 */
export function namespaceKeys(
  prefix: string,
  namespace: string,
): { readonly index: string; readonly groups: string; readonly announce: string } {
  const tag = `${prefix}{${namespace}}`;
  return { index: `${tag}:topics`, groups: `${tag}:groups`, announce: `${tag}:new` };
}
