/**
 * The name of the Durable Object a pipe path meets in (`broker.objectShards`). With no shards, the path
 * itself: one object per path, created near its first party and gone when its last request ends. With N
 * shards, one of N names chosen by a hash of the path, so objects outlive their pipes and a new path meets
 * in a warm object (a new object costs about 5 ms under local workerd; docs/benchmarks.md).
 */
export function pipeObjectName(path: string, shards: number): string {
  if (shards === 0) return path;
  return `shard:${fnv1a(path) % shards}/${shards}`;
}

/**
 * FNV-1a, 32 bits, over the path's UTF-16 code units: stable across isolates and deploys (both parties of
 * a pipe must reach the same object from any isolate), and a pipe path is chosen by its user, not an
 * adversary who gains anything from a collision beyond sharing an object.
 */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
