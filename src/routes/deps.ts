import type { AccessPolicy } from '../access/access-policy.js';
import type { ClientSlot } from '../access/client-limits.js';
import type { Broker } from '../broker/types.js';
import type { ByteSource } from '../byte-source.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { LatencyWindows } from '../selfheal/latency-windows.js';
import type { TrafficCounters } from '../selfheal/traffic-counters.js';
import type { WatcherView } from '../selfheal/watcher.js';

/** What every route gets from `createApp`. */
export interface RouteDeps {
  readonly config: Config;
  readonly broker: Broker;
  readonly clock: Clock;
  /** Reads a request's body: `request.body`, or a runtime's faster native path (see `AppDeps`). */
  readonly requestBody: RequestBodyReader;
  /** Every value of a repeated request header, each as the client sent it; see `AppDeps`. */
  readonly headerValues: HeaderValuesReader;
  /** Builds the Response of a streaming body (a transcript or a pipe's bytes); see `AppDeps`. */
  readonly streamResponse: StreamResponder;
  /**
   * Makes the Response of a body the broker hands over whole as a stream (`PipeMeta.body`); present where
   * the runtime moves such streams natively, which lets the send route hand bodies over whole. `done`
   * settles when the transfer is over: until then the response holds its client's pipe slot, as a
   * streaming body does. See `AppDeps`.
   */
  readonly passStream:
    | ((body: ReadableStream<Uint8Array>, init: ResponseInit, done: Promise<void>) => Response)
    | undefined;
  readonly latency: LatencyWindows;
  readonly counters: TrafficCounters;
  /** The self-heal watcher, when the runtime runs one. */
  readonly watcher: WatcherView | undefined;
  /** Who may use which pipe and the admin endpoints. */
  readonly access: AccessPolicy;
  /** Pipe requests' holds on their client's caps; a route marks its request transferring once the peer came. */
  readonly slots: WeakMap<Request, ClientSlot>;
}

/** Makes the Response for a streaming body; a runtime may keep track of these to write them its own way. */
export type StreamResponder = (body: ByteSource, init: ResponseInit) => Response;

/** `env` is what the runtime passes to `fetch` beside the request (Node: its IncomingMessage). */
export type RequestBodyReader = (request: Request, env: unknown) => ByteSource;

/**
 * Every value of request header `name` (lower case), in the order the client sent them. A web `Request`
 * joins repeated values with ", ", so only a runtime that keeps the raw head (Node's `rawHeaders`) can
 * return them one by one; elsewhere the joined value comes back as one.
 */
export type HeaderValuesReader = (request: Request, env: unknown, name: string) => readonly string[];
