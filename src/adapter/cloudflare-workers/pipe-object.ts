import type { Hono } from 'hono';
import { createApp } from '../../app.js';
import { MemoryBroker } from '../../broker/memory/memory-broker.js';
import { LatencyWindows } from '../../selfheal/latency-windows.js';
import { nativePassThrough, passedResponse, streamingResponse } from './streaming-response.js';
import { configOf, type Env } from './worker-env.js';

/**
 * The Durable Object of one pipe path (`idFromName(path)`, see index.ts). workerd runs every request to one
 * object in the object's own I/O context, so here, unlike in a plain Worker, a receiver's response may
 * stream a sender's request body: the same app and routes run on an in-memory broker, and every party of a
 * path meets in this one object without a Redis. The object lives as long as a request to it is open.
 */
export class PipeObject {
  private app: Hono | undefined;

  constructor(
    _state: unknown,
    private readonly env: Env,
  ) {}

  fetch(request: Request): Response | Promise<Response> {
    if (!this.app) {
      let config: ReturnType<typeof configOf>;
      try {
        config = configOf(this.env);
      } catch (error) {
        return new Response(`[ERROR] ${(error as Error).message}\n`, { status: 500 });
      }
      const latency = new LatencyWindows();
      this.app = createApp(config, {
        // A pipe of one receiver hands its body over whole, natively; n > 1 and the cases that must see
        // the bytes (a multipart part, a chunked body under a size cap) go chunk by chunk.
        broker: new MemoryBroker({
          windowBytes: config.broker.windowBytes ?? 1024 * 1024,
          maxPipes: config.limits.maxPipes,
          maxWaiting: config.limits.maxWaiting,
          latency,
          passThrough: nativePassThrough,
        }),
        latency,
        streamResponse: streamingResponse,
        passStream: passedResponse,
        peerAddress: (req) => req.headers.get('cf-connecting-ip') ?? undefined,
      });
    }
    return this.app.fetch(request, this.env);
  }
}
