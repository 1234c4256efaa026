import type { Cluster, Redis } from 'ioredis';
import { instanceKey } from './keys.js';

/**
 * Tells the other instances that this one is alive: a key with a short expiry, refreshed at a third of it.
 * When an instance dies (SIGKILL, lost host) its key expires, and the parties it served count as dropped,
 * so their transfers can be resumed through another instance or settle after the grace period.
 */
export class InstanceHeartbeat {
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly key: string;

  constructor(
    private readonly redis: Redis | Cluster,
    prefix: string,
    instanceId: string,
    private readonly ttlMs: number,
  ) {
    this.key = instanceKey(prefix, instanceId);
  }

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => this.beat().catch(() => {}), Math.max(50, Math.floor(this.ttlMs / 3)));
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.redis.del(this.key);
  }

  private async beat(): Promise<void> {
    await this.redis.set(this.key, '1', 'PX', this.ttlMs);
  }
}

/**
 * Of the owners given (instance ids, `d:<ms>` marks of parties whose client dropped, `d:<ms>:<instance>`
 * marks of parties whose instance lapsed), the instances whose heartbeat is gone. This instance is alive
 * by definition.
 */
export async function deadInstances(
  redis: Redis | Cluster,
  prefix: string,
  owners: Iterable<string | null | undefined>,
  self: string,
): Promise<string[]> {
  const ids = new Set<string>();
  for (const owner of owners) {
    if (!owner) continue;
    // A party marked for its instance's lapse (`d:<ms>:<instance>`): is that instance back?
    const instance = owner.startsWith('d:') ? owner.split(':').slice(2).join(':') : owner;
    if (instance && instance !== self) ids.add(instance);
  }
  const dead: string[] = [];
  await Promise.all(
    [...ids].map(async (id) => {
      if ((await redis.exists(instanceKey(prefix, id))) === 0) dead.push(id);
    }),
  );
  return dead;
}

/** Whether an owner counts as dropped, given the dead instances (mirrors `dropped_for` in the scripts). */
export function isDropped(owner: string | null | undefined, dead: readonly string[]): boolean {
  if (!owner) return false;
  if (!owner.startsWith('d:')) return dead.includes(owner);
  const instance = owner.split(':').slice(2).join(':');
  return instance === '' || dead.includes(instance);
}
