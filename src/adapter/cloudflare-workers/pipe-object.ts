import type { Hono } from 'hono';
import { createApp } from '../../app.js';
import { MemoryBroker } from '../../broker/memory/memory-broker.js';
import { LatencyWindows, type MetricName } from '../../selfheal/latency-windows.js';
import { drainRefusedBody } from './drain-refused-body.js';
import { nativePassThrough, passedResponse, streamingResponse } from './streaming-response.js';
import { WATCH_NAME, WATCH_URL } from './watch-object.js';
import { WatchReporter } from './watch-reporter.js';
import { configOf, type DurableObjectState, type Env } from './worker-env.js';

/** This object's windows (its own `/_/metrics` would read them), every sample also reported. */
class ReportedWindows extends LatencyWindows {
  constructor(private readonly reporter: WatchReporter) {
    super();
  }

  override record(metric: MetricName, ms: number): void {
    super.record(metric, ms);
    this.reporter.record(metric, ms);
  }
}

/**
 * The Durable Object of one pipe path (`idFromName(path)`), or of the paths of one shard
 * (`broker.objectShards`, pipe-object-name.ts). workerd runs every request to one
 * object in the object's own I/O context, so here, unlike in a plain Worker, a receiver's response may
 * stream a sender's request body: the same app and routes run on an in-memory broker, and every party of a
 * path meets in this one object without a Redis. The object lives as long as a request to it is open. It
 * measures its pipes (`ttfb`, `chunk`, `request`) and reports them and its counts to the watch object
 * (watch-object.ts), which runs the self-heal rules and answers `/_/health`'s counts.
 */
export class PipeObject {
  private app: Hono | undefined;
  private reporter: WatchReporter | undefined;

  constructor(
    private readonly state: DurableObjectState,
    private readonly env: Env,
  ) {}

  async fetch(request: Request): Promise<Response> {
    if (!this.app) {
      let config: ReturnType<typeof configOf>;
      try {
        config = configOf(this.env);
      } catch (error) {
        return drainRefusedBody(
          request,
          new Response(`[ERROR] ${(error as Error).message}\n`, { status: 500 }),
        );
      }
      const watch = this.env.WATCH;
      let broker: MemoryBroker | undefined;
      const reporter = watch
        ? new WatchReporter(
            this.state.id.toString(),
            () => broker?.stats() ?? { pipes: 0, waiting: 0 },
            (report) =>
              watch
                .get(watch.idFromName(WATCH_NAME))
                .fetch(new Request(WATCH_URL.report, { method: 'POST', body: JSON.stringify(report) }))
                .then((response) => response.body?.cancel()),
          )
        : undefined;
      const latency = reporter ? new ReportedWindows(reporter) : new LatencyWindows();
      // A pipe of one receiver hands its body over whole, natively; n > 1 and the cases that must see the
      // bytes (a multipart part, a chunked body under a size cap) go chunk by chunk.
      broker = new MemoryBroker({
        windowBytes: config.broker.windowBytes ?? 1024 * 1024,
        maxPipes: config.limits.maxPipes,
        maxWaiting: config.limits.maxWaiting,
        latency,
        passThrough: nativePassThrough,
      });
      this.reporter = reporter;
      this.app = createApp(config, {
        broker,
        latency,
        streamResponse: streamingResponse,
        passStream: passedResponse,
        peerAddress: (req) => req.headers.get('cf-connecting-ip') ?? undefined,
      });
    }
    // A party came: the counts change once the app has taken it (the report waits a moment).
    this.reporter?.changed();
    const response = await this.app.fetch(request, this.env);
    this.reporter?.changed();
    return drainRefusedBody(request, response);
  }
}
