import {
  RESUMABLE_HEADER,
  RESUMABLE_YES,
  SENDER_HEADER,
  STATE_HEADER,
  UPLOAD_OFFSET_HEADER,
} from '../protocol/resumable.js';
import { GaveUpError, RefusedError, TransferError } from './errors.js';
import { describe } from './network-error.js';
import { type Backoff, retryAfterMs, retryableStatus } from './retry-policy.js';
import type { TransferOptions } from './transfer-options.js';

/** How a pipe stands, as `HEAD /<path>` tells an edgepipe server's client. */
export interface PipeProbe {
  /** An edgepipe server answered (it reports the pipe's state); false for piping-server and the like. */
  readonly edgepipe: boolean;
  /** The server keeps what a dropped party needs to resume. */
  readonly resumable: boolean;
  readonly state: 'idle' | 'waiting' | 'transferring' | 'ended' | undefined;
  /** Where a sender whose upload broke continues. */
  readonly uploadOffset: number | undefined;
  readonly senderDropped: boolean | undefined;
  /**
   * The server refused the credential (401/403). Only a first probe returns this (see `probeWithRetries`):
   * the transfer's own request then meets the same refusal with the server's reason, which a HEAD answer
   * has no body to carry.
   */
  readonly refused?: boolean;
}

/** Reads a `HEAD` answer (any status: a server that does not know HEAD is simply not an edgepipe one). */
export function probeOf(response: Response): PipeProbe {
  const headers = response.headers;
  const state = headers.get(STATE_HEADER);
  const edgepipe = response.ok && state !== null;
  const offset = headers.get(UPLOAD_OFFSET_HEADER);
  const sender = headers.get(SENDER_HEADER);
  return {
    edgepipe,
    resumable: edgepipe && headers.get(RESUMABLE_HEADER) === RESUMABLE_YES,
    state: edgepipe ? (state as PipeProbe['state']) : undefined,
    uploadOffset: offset !== null && /^\d+$/.test(offset) ? Number(offset) : undefined,
    senderDropped: sender === null ? undefined : sender === 'dropped',
  };
}

/** What a `HEAD` needs of a transfer's options. */
export type ProbeTarget = Pick<
  TransferOptions,
  'url' | 'headers' | 'fetch' | 'signal' | 'clock' | 'retry' | 'onEvent'
>;

/**
 * `HEAD` until it answers, retried with `backoff` like any request (network errors, 5xx, 408, 429 with
 * their `Retry-After`); `again` may name a reason to ask once more about an answer (a sender the server
 * still counts as connected). A refused credential is final: thrown, or with `onRefusal: 'return'` (a
 * transfer's first probe, whose own request follows) returned as a `refused` probe, so that the refusal
 * the user sees is the server's own one-line reason from that request.
 * @throws RefusedError, GaveUpError
 */
export async function probeWithRetries(
  target: ProbeTarget,
  backoff: Backoff,
  again: (probe: PipeProbe) => string | undefined = () => undefined,
  onRefusal: 'throw' | 'return' = 'throw',
): Promise<PipeProbe> {
  for (;;) {
    let reason: string;
    let serverWaitMs: number | undefined;
    try {
      const response = await headRequest(target);
      if (response.status === 401 || response.status === 403) {
        if (onRefusal === 'return') return { ...probeOf(response), refused: true };
        throw new RefusedError(response.status, 'the URL or token is not accepted');
      }
      if (retryableStatus(response.status)) {
        reason = `HTTP ${response.status}`;
        serverWaitMs = retryAfterMs(response.headers.get('retry-after'), target.clock.now());
      } else {
        const probe = probeOf(response);
        const why = again(probe);
        if (why === undefined) return probe;
        reason = why;
      }
    } catch (error) {
      if (error instanceof TransferError) throw error;
      target.signal?.throwIfAborted();
      reason = describe(error);
    }
    const waitMs = backoff.next(serverWaitMs);
    if (waitMs === undefined) {
      throw new GaveUpError(
        `gave up after ${Math.round(target.retry.budgetMs / 1000)} s without progress: ${reason}`,
      );
    }
    target.onEvent?.({ type: 'retrying', reason, inMs: Math.round(waitMs), attempt: backoff.attempts });
    await target.clock.sleep(waitMs, target.signal);
  }
}

/** `HEAD` on the pipe with only its credential (the other headers describe a body a HEAD does not have). */
export async function headRequest(target: ProbeTarget): Promise<Response> {
  const headers = new Headers();
  for (const [name, value] of target.headers)
    if (name.toLowerCase() === 'authorization') headers.set(name, value);
  const response = await target.fetch(target.url, {
    method: 'HEAD',
    headers,
    ...(target.signal ? { signal: target.signal } : {}),
  });
  await response.body?.cancel().catch(() => {});
  return response;
}
