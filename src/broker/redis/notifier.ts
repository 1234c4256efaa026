import type { Cluster, Redis } from 'ioredis';

type Listener = (message: string) => void;

/** What every listener hears when the connection is back: messages may have been lost, re-check. */
export const RECONNECTED = 'reconnected';

/**
 * Multiplexes every wait of this instance over one Pub/Sub connection: 10,000 waiting parties share it
 * instead of holding 10,000 blocking connections. Pub/Sub is at-most-once (a message published while the
 * connection is down is lost), so every listener is woken when the connection comes back, and waiters
 * re-check state on a slow timer as well; a message only wakes them sooner.
 */
export class Notifier {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly subscribing = new Map<string, Promise<unknown>>();

  constructor(private readonly subscriber: Redis | Cluster) {
    // Messages are ASCII but for a start message's headers (msgpack), whose bytes latin1 keeps one for one;
    // 'message' would decode them as UTF-8. Channels hold paths, which are UTF-8.
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      const set = this.listeners.get(channel.toString());
      if (!set) return;
      const text = message.toString('latin1');
      for (const listener of set) listener(text);
    });
    // ioredis subscribes again by itself after a reconnect; the listeners only need to re-check.
    subscriber.on('ready', () => {
      for (const set of this.listeners.values()) for (const listener of set) listener(RECONNECTED);
    });
  }

  /** Calls `listener` for each message on `channel` from the moment the subscription is acknowledged. */
  async listen(channel: string, listener: Listener): Promise<() => void> {
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      const subscribed = this.subscriber.subscribe(channel);
      this.subscribing.set(channel, subscribed);
      subscribed.finally(() => this.subscribing.delete(channel)).catch(() => {});
    }
    set.add(listener);
    const listeners = set;
    try {
      await this.subscribing.get(channel);
    } catch (error) {
      // Not subscribed: forget the set, so the next listener subscribes again instead of trusting it.
      listeners.delete(listener);
      if (listeners.size === 0 && this.listeners.get(channel) === listeners) this.listeners.delete(channel);
      throw error;
    }
    return () => {
      if (!listeners.delete(listener) || listeners.size > 0) return;
      if (this.listeners.get(channel) === listeners) this.listeners.delete(channel);
      this.subscriber.unsubscribe(channel).catch(() => {});
    };
  }
}
