import * as hdr from 'hdr-histogram-js';

/** The latencies edgepipe watches (see README, "Self-healing"). */
export const METRICS = ['redis', 'redis_standby', 'ttfb', 'chunk', 'request'] as const;
export type MetricName = (typeof METRICS)[number];

/** Where the hot path drops a latency sample; must be cheap (an O(1) histogram update). */
export interface LatencySink {
  record(metric: MetricName, ms: number): void;
}

/** A sink that keeps nothing, for apps built without a watcher. */
export const NO_LATENCY: LatencySink = { record: () => {} };

/** One metric's samples in one closed window. */
export interface WindowStats {
  readonly count: number;
  /** The latency at quantile `q` (0..1) in ms, within the histogram's 0.1 % relative error. */
  quantile(q: number): number;
}

/** Samples are recorded in microseconds, from 1 µs to an hour, with 3 significant digits. */
const MICROS = 1000;
const HIGHEST_US = 3600 * 1000 * MICROS;

/**
 * How a histogram keeps its counters. `flat`: one 32-bit counter per bucket, about 93 KiB per histogram (ten
 * in all), and an update is an array index: for a server that runs for long and records every chunk of
 * every pipe. `packed` (the default): a few hundred bytes while idle, for what is built per request or per
 * object (Workers), at several times the cost per update. 1 GiB through one pipe in memory, 11 interleaved
 * pairs (medians): packed 948 MiB/s and 1.08 s of CPU per GiB, flat 976 MiB/s and 1.02 s (docs/benchmarks.md).
 */
export type HistogramBuckets = 'flat' | 'packed';

function newHistogram(buckets: HistogramBuckets): hdr.Histogram {
  return hdr.build({
    // Plain JS (no WebAssembly) runs on every runtime.
    useWebAssembly: false,
    bitBucketSize: buckets === 'flat' ? 32 : 'packed',
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
  });
}

/**
 * A closed window's stats. Each quantile is computed once: one takes 5-9 ms on a packed histogram (it walks
 * the buckets), and `/_/metrics` asks for 15. Asked afresh on every scrape, a dashboard polling a few times
 * a second kept the event loop busy enough to make the Redis probes (and every transfer) look slow.
 */
function statsOf(histogram: hdr.Histogram): WindowStats {
  const count = histogram.totalCount;
  const known = new Map<number, number>();
  return {
    count,
    quantile: (q) => {
      if (count === 0) return 0;
      let value = known.get(q);
      if (value === undefined) {
        value = histogram.getValueAtPercentile(q * 100) / MICROS;
        known.set(q, value);
      }
      return value;
    },
  };
}

/**
 * Latency histograms per metric over tumbling windows: `record` adds to the open window, `rotate` closes it
 * (the watcher does, once per interval) and opens the next. Each metric also keeps a lifetime count and
 * sum for `/_/metrics`. Memory is fixed: two histograms per metric, reused.
 */
export class LatencyWindows implements LatencySink {
  private open = new Map<MetricName, hdr.Histogram>();
  private closed = new Map<MetricName, hdr.Histogram>();
  private readonly totals = new Map<MetricName, { count: number; sumMs: number }>();
  /** The stats of the closed window, made at `rotate` so that their quantiles are computed once. */
  private closedStats: ReadonlyMap<MetricName, WindowStats>;

  constructor(buckets: HistogramBuckets = 'packed') {
    for (const metric of METRICS) {
      this.open.set(metric, newHistogram(buckets));
      this.closed.set(metric, newHistogram(buckets));
      this.totals.set(metric, { count: 0, sumMs: 0 });
    }
    this.closedStats = this.statsOfClosed();
  }

  record(metric: MetricName, ms: number): void {
    const value = Math.min(HIGHEST_US, Math.max(1, Math.round(ms * MICROS)));
    this.open.get(metric)!.recordValue(value);
    const total = this.totals.get(metric)!;
    total.count += 1;
    total.sumMs += ms;
  }

  /** Closes the open window of every metric and returns it; the stats stay valid until the next rotate. */
  rotate(): ReadonlyMap<MetricName, WindowStats> {
    const finished = this.open;
    this.open = this.closed;
    for (const histogram of this.open.values()) histogram.reset();
    this.closed = finished;
    this.closedStats = this.statsOfClosed();
    return this.closedStats;
  }

  /** The window closed by the last `rotate`. */
  lastWindow(): ReadonlyMap<MetricName, WindowStats> {
    return this.closedStats;
  }

  private statsOfClosed(): ReadonlyMap<MetricName, WindowStats> {
    return new Map([...this.closed].map(([metric, histogram]) => [metric, statsOf(histogram)]));
  }

  /** Samples and their sum since start, per metric (Prometheus `_count` and `_sum`). */
  lifetime(metric: MetricName): { readonly count: number; readonly sumMs: number } {
    return { ...this.totals.get(metric)! };
  }
}
