import type { BrokerStats } from '../broker/types.js';
import { type LatencyWindows, METRICS } from './latency-windows.js';
import type { TrafficCounters } from './traffic-counters.js';
import type { WatcherCounters } from './watcher.js';

export interface MetricsSources {
  readonly windows: LatencyWindows;
  readonly counters: TrafficCounters;
  readonly broker: BrokerStats;
  readonly backend: 'primary' | 'standby';
  readonly watcher?: WatcherCounters | undefined;
}

const QUANTILES = [0.5, 0.9, 0.99] as const;

/**
 * `/_/metrics` in the Prometheus text exposition format (version 0.0.4). Latencies are summaries: the
 * quantiles of the last closed window (what the self-heal rules judge), `_sum` and `_count` since start.
 */
export function renderMetrics(sources: MetricsSources): string {
  const lines: string[] = [];
  const family = (name: string, type: string, help: string) =>
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);

  family(
    'edgepipe_latency_ms',
    'summary',
    'Latency in ms: quantiles of the last window, sum and count since start.',
  );
  const last = sources.windows.lastWindow();
  for (const metric of METRICS) {
    const stats = last.get(metric);
    for (const q of QUANTILES) {
      const value = stats && stats.count > 0 ? stats.quantile(q) : Number.NaN;
      lines.push(`edgepipe_latency_ms{metric="${metric}",quantile="${q}"} ${value}`);
    }
    const total = sources.windows.lifetime(metric);
    lines.push(`edgepipe_latency_ms_sum{metric="${metric}"} ${total.sumMs}`);
    lines.push(`edgepipe_latency_ms_count{metric="${metric}"} ${total.count}`);
  }

  const { counters } = sources;
  family(
    'edgepipe_bytes_total',
    'counter',
    'Body bytes taken from senders (in) and handed to receivers (out).',
  );
  lines.push(`edgepipe_bytes_total{direction="in"} ${counters.bytesIn}`);
  lines.push(`edgepipe_bytes_total{direction="out"} ${counters.bytesOut}`);
  family('edgepipe_transfers_total', 'counter', 'Transfers by how their sender side ended.');
  lines.push(`edgepipe_transfers_total{outcome="completed"} ${counters.transfers.completed}`);
  lines.push(`edgepipe_transfers_total{outcome="failed"} ${counters.transfers.failed}`);
  lines.push(`edgepipe_transfers_total{outcome="receivers_gone"} ${counters.transfers.receiversGone}`);
  family('edgepipe_responses_total', 'counter', 'HTTP responses by status code (errors included).');
  for (const [status, count] of [...counters.responses].sort((a, b) => a[0] - b[0])) {
    lines.push(`edgepipe_responses_total{code="${status}"} ${count}`);
  }
  family('edgepipe_pipes', 'gauge', 'Pipes this instance takes part in.');
  lines.push(`edgepipe_pipes ${sources.broker.pipes}`);
  family('edgepipe_waiting', 'gauge', 'Parties waiting for their peers on this instance.');
  lines.push(`edgepipe_waiting ${sources.broker.waiting}`);
  family('edgepipe_backend_active', 'gauge', 'The Redis new pipes go to (1) and the other (0).');
  lines.push(`edgepipe_backend_active{backend="primary"} ${sources.backend === 'primary' ? 1 : 0}`);
  lines.push(`edgepipe_backend_active{backend="standby"} ${sources.backend === 'standby' ? 1 : 0}`);
  const watcher = sources.watcher;
  family(
    'edgepipe_selfheal_total',
    'counter',
    'Self-heal actions fired, held back, recovered; hooks failed.',
  );
  for (const [kind, value] of Object.entries(
    watcher ?? { fired: 0, suppressed: 0, recovered: 0, hookFailures: 0 },
  )) {
    lines.push(
      `edgepipe_selfheal_total{kind="${kind.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}"} ${value}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
