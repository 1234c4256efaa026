/** One self-heal decision or outcome, as the audit trail keeps it. */
export interface AuditEntry {
  /** ISO 8601. */
  readonly time: string;
  readonly instance: string;
  readonly rule: string;
  readonly kind: 'breach' | 'fired' | 'dry-run' | 'suppressed' | 'recovered' | 'hook' | 'backend';
  /** One line a human reads, e.g. `p99 112.4 ms > 50 ms (2 of 3)`. */
  readonly detail: string;
  readonly valueMs?: number;
}

/** A bounded list shared by every instance (the Redis broker provides one). */
export interface AuditStore {
  append(entry: string, keep: number): Promise<void>;
  /** The latest `limit` entries, oldest first. */
  recent(limit: number): Promise<string[]>;
}

/**
 * Where every decision goes: a ring in memory (always), the shared stores (Redis, when configured: every
 * instance's decisions in one place) and the log. A store that fails (the slow Redis a reroute is about)
 * costs nothing but its copy: the memory ring still answers.
 */
export class AuditTrail {
  private readonly ring: AuditEntry[] = [];

  constructor(
    private readonly size: number,
    private readonly stores: readonly AuditStore[],
    private readonly log: (line: string) => void,
  ) {}

  add(entry: AuditEntry): void {
    this.ring.push(entry);
    if (this.ring.length > this.size) this.ring.shift();
    this.log(`[selfheal] ${entry.kind} ${entry.rule}: ${entry.detail}`);
    const line = JSON.stringify(entry);
    for (const store of this.stores) store.append(line, this.size).catch(() => {});
  }

  /**
   * The latest entries: from whichever shared store answers first within `timeoutMs` (every instance's
   * decisions; asked all at once, since the store a reroute is about may be the slow one), else this
   * instance's own.
   */
  async recent(limit: number, timeoutMs = 500): Promise<AuditEntry[]> {
    if (this.stores.length > 0) {
      const answers = this.stores.map((store) => store.recent(limit));
      for (const answer of answers) answer.catch(() => {});
      let cancel: () => void = () => {};
      const lines = await Promise.race([
        Promise.any(answers).catch(() => undefined),
        new Promise<undefined>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          cancel = () => clearTimeout(timer);
        }),
      ]);
      cancel();
      if (lines) return lines.map((line) => JSON.parse(line) as AuditEntry);
    }
    return this.ring.slice(-limit);
  }
}
