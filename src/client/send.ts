import { GaveUpError, RefusedError, TransferError, UsageError } from './errors.js';
import { headRequest, type PipeProbe, probeOf, probeWithRetries } from './pipe-probe.js';
import { Backoff } from './retry-policy.js';
import { attempt, type Body, catchUpDigest } from './send-attempt.js';
import type { SendOptions } from './send-options.js';
import { MIN_PIECE_BYTES, type UploadMode } from './upload-mode.js';

/** How a send ended well. */
export interface SendResult {
  /** Wire bytes in the pipe (the plaintext plus framing or sealing). */
  readonly wireBytes: number;
  /** Times the upload continued after a break. */
  readonly resumes: number;
  /** What the server said last (the transcript's last line). */
  readonly summary: string;
}

/**
 * Sends one body through a pipe and does not stop until every receiver has it, the server refuses for good,
 * or the retry budget is spent. A break before the transfer started waits again; a break after it resumes
 * at the broker's committed offset (`HEAD`, then `PUT ?offset=`) where the server can, and says it cannot
 * where it cannot.
 * @throws TransferError (RefusedError, GaveUpError, PeerAbortedError, IntegrityError)
 */
export async function send(options: SendOptions): Promise<SendResult> {
  const { clock, retry, onEvent = () => {} } = options;
  const backoff = new Backoff(retry, () => clock.now(), options.random);
  let probe = options.knownProbe ?? (await probeWithRetries(options, backoff, undefined, 'return'));
  // Whoever probed for us has told the user already; after a refused probe the PUT is refused with the
  // server's reason, and a notice before it would only mislead.
  const tell = !options.knownProbe && !probe.refused;
  if (tell && !probe.edgepipe) {
    onEvent({
      type: 'notice',
      text: 'the server does not say it can resume: a break after the start ends the transfer',
    });
  } else if (tell && !probe.resumable) {
    onEvent({
      type: 'notice',
      text: 'this server cannot resume (in-memory broker): a break after the start ends the transfer',
    });
  }
  let mode = options.upload ?? STREAM;
  if (
    mode.kind === 'pieces' &&
    !(Number.isSafeInteger(mode.pieceBytes) && mode.pieceBytes >= MIN_PIECE_BYTES)
  ) {
    throw new UsageError(`a piece should be a whole number of bytes, at least ${MIN_PIECE_BYTES}`);
  }
  if (mode.kind === 'pieces' && !probe.resumable && !probe.refused) {
    // Without a broker that holds the transfer between requests there is nothing to continue a piece.
    mode = WHOLE;
    onEvent({ type: 'notice', text: 'this server cannot resume: the body goes up whole, not in pieces' });
  }
  // Where the next attempt starts on the wire; undefined: from the start, as a new transfer.
  let resumeAt: number | undefined;
  let body: Body = { source: options.source, encoding: options.encoding };
  const earlier = options.continuing;
  if (earlier && probe.state === 'transferring' && probe.senderDropped === false) {
    // The killed run's connection may not have closed on the server's side yet (its last bytes and its FIN
    // queue behind a full window until a receiver reads): wait until it counts as dropped, as after a break.
    probe = await probeWithRetries(
      options,
      backoff,
      stillConnected("the server still counts the interrupted run's sender as connected"),
    );
  }
  if (earlier && probe.state === 'transferring' && probe.senderDropped && probe.uploadOffset !== undefined) {
    if (earlier.changed) throw earlier.changed;
    body = { source: earlier.source, encoding: earlier.encoding };
    resumeAt = probe.uploadOffset;
    onEvent({ type: 'notice', text: `continuing an interrupted transfer at byte ${resumeAt}` });
  } else if (
    earlier &&
    probe.state === 'ended' &&
    probe.uploadOffset !== undefined &&
    probe.uploadOffset === earlier.encoding.wireLength(earlier.source.length)
  ) {
    // The earlier run was killed after the broker had every byte: the transfer ended without it and only
    // its transcript was lost (as in the loop below). Sending again would open a new transfer nobody reads.
    // An aborted transfer, or another of another length, reports no such offset.
    if (earlier.changed) throw earlier.changed;
    await catchUpDigest(options, earlier.source, earlier.source.length ?? 0);
    return {
      wireBytes: earlier.encoding.wireLength(earlier.source.length) ?? -1,
      resumes: 0,
      summary: 'The interrupted transfer had ended on the server while this sender was down.',
    };
  }
  let resumes = 0;
  // Whether the last attempt broke: the server may then still hold this sender's dropped place a moment.
  let broke = false;
  // Whether the next attempt continues after a piece (not a resume: nothing broke).
  let nextPiece = false;
  for (;;) {
    options.signal?.throwIfAborted();
    const outcome = await attempt(options, body, resumeAt, backoff, broke, mode, nextPiece);
    // A wait whose connection broke counts too: the server may still hold that request's place, or have
    // begun the transfer with it. A 409 to the next request then sends it to ask where the transfer stands.
    broke = outcome.kind === 'broken' || (outcome.kind === 'rewait' && outcome.connectionBroke);
    nextPiece = outcome.kind === 'piece';
    if (outcome.kind === 'piece') {
      // At once, at the offset the server committed: no HEAD, no pause.
      backoff.progressed();
      resumeAt = outcome.offset;
      continue;
    }
    if (outcome.kind === 'done') {
      return {
        wireBytes: body.encoding.wireLength(body.source.length) ?? -1,
        resumes,
        summary: outcome.summary,
      };
    }
    if (outcome.kind === 'maybe-resent') {
      const own = probe.resumable ? await ownTransfer(options, outcome.upTo) : undefined;
      if (own === undefined) throw new RefusedError(outcome.status, outcome.reason);
      onEvent({ type: 'notice', text: `continuing this sender's transfer at byte ${own}` });
      resumeAt = own;
      resumes += 1;
      continue;
    }
    if (outcome.kind === 'rewait') {
      // The wait itself ended (the server's wait limit, a NAT that dropped the idle connection): not a
      // failure of the transfer, which has not begun. Wait again.
      backoff.progressed();
      onEvent({ type: 'notice', text: `${outcome.reason}; waiting again` });
      resumeAt = undefined;
      continue;
    }
    if (!probe.resumable) {
      if (outcome.started) {
        throw new GaveUpError(
          `the connection broke during the transfer (${outcome.reason}) and this server cannot resume it`,
        );
      }
      await pause(options, backoff, outcome.reason, outcome.waitMs);
      resumeAt = undefined;
      continue;
    }
    await pause(options, backoff, outcome.reason, outcome.waitMs);
    // Where the transfer stands decides, not what this client saw: the transcript may have been cut before
    // its "Start sending" line, or after the last byte was committed. The server may not have noticed the
    // drop yet: ask until it counts the sender as dropped.
    probe = await probeWithRetries(
      options,
      backoff,
      stillConnected('the server still counts the sender as connected'),
    );
    if (probe.state === 'transferring' && probe.senderDropped && probe.uploadOffset !== undefined) {
      resumeAt = probe.uploadOffset;
      resumes += 1;
      continue;
    }
    if (probe.state === 'ended' && outcome.sentAll && probe.uploadOffset === outcome.sentTo) {
      // Every byte was committed and the transfer ended; only its transcript was lost with the connection.
      return {
        wireBytes: outcome.sentTo,
        resumes,
        summary: 'The transfer ended while the connection was down.',
      };
    }
    if (outcome.started) {
      throw new GaveUpError(
        `the connection broke (${outcome.reason}) and the server no longer holds the transfer (it is ${probe.state ?? 'gone'}` +
          `${probe.uploadOffset === undefined ? '' : ` at byte ${probe.uploadOffset}`}; this client sent ${outcome.sentTo} bytes${outcome.sentAll ? ', all of them' : ''})`,
      );
    }
    resumeAt = undefined;
  }
}

const STREAM: UploadMode = { kind: 'stream' };
const WHOLE: UploadMode = { kind: 'whole' };

/** Asks `HEAD` again while a transfer runs whose sender the server still counts as connected. */
function stillConnected(why: string): (probe: PipeProbe) => string | undefined {
  return (probe) => (probe.state === 'transferring' && probe.senderDropped === false ? why : undefined);
}

/** How long a 409 that may answer a resent request waits for the transfer's sender to count as dropped. */
const RESENT_WAIT_MS = 5000;

/**
 * After a `maybe-resent` 409: the offset to continue this sender's own transfer at, when one runs whose
 * sender dropped (within `RESENT_WAIT_MS`: the broken first copy is seen to close a moment later) at an
 * offset this sender's body reached; undefined when the path is another's (the refusal then stands).
 */
async function ownTransfer(options: SendOptions, upTo: number): Promise<number | undefined> {
  const deadline = options.clock.now() + RESENT_WAIT_MS;
  for (;;) {
    let probe: PipeProbe | undefined;
    try {
      probe = probeOf(await headRequest(options));
    } catch (error) {
      options.signal?.throwIfAborted();
      if (error instanceof TransferError) throw error;
    }
    if (probe && probe.state !== 'transferring') return undefined;
    if (probe?.senderDropped && probe.uploadOffset !== undefined) {
      return probe.uploadOffset <= upTo ? probe.uploadOffset : undefined;
    }
    if (options.clock.now() >= deadline) return undefined;
    await options.clock.sleep(250, options.signal);
  }
}

/** Waits the next backoff step, or gives up when the budget is spent. */
async function pause(
  options: SendOptions,
  backoff: Backoff,
  reason: string,
  serverWaitMs?: number,
): Promise<void> {
  const waitMs = backoff.next(serverWaitMs);
  if (waitMs === undefined) {
    throw new GaveUpError(
      `gave up after ${Math.round(options.retry.budgetMs / 1000)} s without progress: ${reason}`,
    );
  }
  options.onEvent?.({ type: 'retrying', reason, inMs: Math.round(waitMs), attempt: backoff.attempts });
  await options.clock.sleep(waitMs, options.signal);
}
