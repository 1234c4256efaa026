import type { StreamDigest } from './digest.js';
import type { PipeProbe } from './pipe-probe.js';
import type { RetryOptions } from './retry-policy.js';
import type { TransferClock, TransferEvent } from './transfer-events.js';

/** What every transfer needs, sending or receiving; the CLI and the page build it. */
export interface TransferOptions {
  /** The pipe's URL, `?n=` and any signature included. */
  readonly url: URL;
  /** Request headers: Authorization, X-Piping, ... (pairs: a header may repeat). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly fetch: typeof fetch;
  readonly retry: RetryOptions;
  /** Without a byte for this long while bytes should flow, the attempt is dropped and resumed (0: never). */
  readonly stallMs: number;
  readonly clock: TransferClock;
  readonly random?: () => number;
  /** The user gave up (Ctrl-C, the page's cancel button). */
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: TransferEvent) => void;
  /** Fed the plaintext once, in order (`--sha256`). */
  readonly digest?: StreamDigest;
  /**
   * What a `HEAD` on this server already said of a pipe known to be new (a tunnel asks once for all its
   * pipes): the first `HEAD` is skipped, which saves a round trip per pipe.
   */
  readonly knownProbe?: PipeProbe;
  /**
   * Whether requests declare that this side resumes (`X-Edgepipe-Resumable: 1`, the default). A short
   * message that is simply sent again after a break says no: the server then frees the pipe at once
   * instead of keeping a dropped party's place for it.
   */
  readonly declareResumable?: boolean;
}
