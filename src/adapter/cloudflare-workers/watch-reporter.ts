import type { BrokerStats } from '../../broker/types.js';
import type { LatencySink, MetricName } from '../../selfheal/latency-windows.js';
import type { WatchReport } from './watch-object.js';

/** Samples one batch holds, all metrics together; beyond it they are dropped and counted. */
const MAX_BATCH_SAMPLES = 2048;
/** A batch waits this long for more samples before it goes (and a party's arrival shows in the counts). */
const FLUSH_DELAY_MS = 100;
/** While the object holds pipes, its counts are re-reported this often (the watch object forgets them). */
const HEARTBEAT_MS = 5000;
/** A report not answered within this is taken as lost. */
const SEND_TIMEOUT_MS = 3000;

/**
 * A PipeObject's latency sink: samples go into a bounded batch that is sent to the watch object with the
 * object's pipe counts, fire-and-forget (`send` never blocks a byte: a sample is an array push, and a
 * report that fails is lost, not retried). One report is in flight at a time; samples taken meanwhile wait
 * for the next. While pipes are held the counts are re-sent every `HEARTBEAT_MS`, and once more when they
 * reach zero.
 */
export class WatchReporter implements LatencySink {
  private batch: Partial<Record<MetricName, number[]>> = {};
  private size = 0;
  private dropped = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private dueAt = 0;
  private sending = false;
  private reportedBusy = false;

  constructor(
    private readonly from: string,
    private readonly stats: () => BrokerStats,
    private readonly send: (report: WatchReport) => Promise<unknown>,
  ) {}

  record(metric: MetricName, ms: number): void {
    if (this.size >= MAX_BATCH_SAMPLES) {
      this.dropped += 1;
      return;
    }
    const samples = this.batch[metric];
    if (samples) samples.push(ms);
    else this.batch[metric] = [ms];
    this.size += 1;
    this.soon(FLUSH_DELAY_MS);
  }

  /** Something changed the counts (a request came or ended): report them shortly. */
  changed(): void {
    this.soon(FLUSH_DELAY_MS);
  }

  /** One timer: a sample due sooner than a pending heartbeat brings it forward. */
  private soon(ms: number): void {
    const due = Date.now() + ms;
    if (this.timer !== undefined) {
      if (this.dueAt <= due) return;
      clearTimeout(this.timer);
    }
    this.dueAt = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
  }

  private async flush(): Promise<void> {
    if (this.sending) return this.soon(FLUSH_DELAY_MS);
    const { pipes, waiting } = this.stats();
    const busy = pipes > 0 || waiting > 0;
    // Nothing new to tell: no samples, and zero counts already told.
    if (this.size === 0 && this.dropped === 0 && !busy && !this.reportedBusy) return;
    const report: WatchReport = {
      from: this.from,
      pipes,
      waiting,
      samples: this.batch,
      dropped: this.dropped,
    };
    this.batch = {};
    this.size = 0;
    this.dropped = 0;
    this.reportedBusy = busy;
    this.sending = true;
    let timeout: ReturnType<typeof setTimeout> | undefined;
    try {
      // A watch object that does not answer must not stop the reports for good.
      await Promise.race([
        this.send(report),
        new Promise((_, reject) => {
          timeout = setTimeout(() => reject(new Error('timeout')), SEND_TIMEOUT_MS);
        }),
      ]);
    } catch {
      // Lost: the next report carries the counts again; the samples of one batch are not worth a retry.
    } finally {
      clearTimeout(timeout);
      this.sending = false;
    }
    if (busy) this.soon(HEARTBEAT_MS);
  }
}
