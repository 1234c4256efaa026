import { ALL_RECEIVERS_GONE } from '../protocol/transcript-lines.js';
/**
 * Domain errors of the pipe contract. Callers match them with `instanceof` or `code`, never by message text;
 * the messages are written for a curl user and end up in `[ERROR] ...` lines.
 */
export abstract class PipeError extends Error {
  abstract readonly code: string;
}

/** The slot asked for is taken: another sender, all receivers present, or the transfer already running. */
export class PipeBusyError extends PipeError {
  readonly code = 'PIPE_BUSY';
  override name = 'PipeBusyError';
  constructor(
    readonly path: string,
    readonly reason: 'sender-connected' | 'receivers-full' | 'established',
  ) {
    super(
      reason === 'sender-connected'
        ? `Another sender has been connected on '${path}'.`
        : reason === 'receivers-full'
          ? `The number of receivers on '${path}' has reached its limit.`
          : `Connection on '${path}' has been established already.`,
    );
  }
}

/** A party asked for a different `n` than the pipe was opened with. */
export class ReceiverCountMismatchError extends PipeError {
  readonly code = 'RECEIVER_COUNT_MISMATCH';
  override name = 'ReceiverCountMismatchError';
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`The number of receivers should be ${expected} but ${actual}.`);
  }
}

/** This broker holds as many pipes or waiting parties as it is allowed to. */
export class CapacityError extends PipeError {
  readonly code = 'CAPACITY';
  override name = 'CapacityError';
  constructor(readonly limit: 'pipes' | 'waiting' | 'topics' | 'groups') {
    super(
      limit === 'pipes'
        ? 'Too many pipes on this server; try again later.'
        : limit === 'waiting'
          ? 'Too many requests waiting on this server; try again later.'
          : limit === 'topics'
            ? 'Too many topics on this server (topics.maxTopics).'
            : 'Too many consumer groups on this topic.',
    );
  }
}

/** The sender failed mid-body; receivers must not mistake the bytes they got for the whole. */
export class SenderAbortedError extends PipeError {
  readonly code = 'SENDER_ABORTED';
  override name = 'SenderAbortedError';
  constructor(reason = 'The sender aborted the transfer.') {
    super(reason);
  }
}

/** Every receiver of a running transfer left. */
export class ReceiversGoneError extends PipeError {
  readonly code = 'RECEIVERS_GONE';
  override name = 'ReceiversGoneError';
  constructor() {
    super(ALL_RECEIVERS_GONE);
  }
}

/** The broker's backend (Redis) cannot be reached right now; new pipes are refused until it is back. */
export class BrokerUnavailableError extends PipeError {
  readonly code = 'BROKER_UNAVAILABLE';
  override name = 'BrokerUnavailableError';
  constructor(cause?: unknown, message?: string) {
    super(message ?? 'The pipe broker is unavailable (its Redis cannot be reached); try again shortly.', {
      cause,
    });
  }
}

/** The broker is closing or closed. */
export class BrokerClosedError extends PipeError {
  readonly code = 'BROKER_CLOSED';
  override name = 'BrokerClosedError';
  constructor() {
    super('The server is shutting down.');
  }
}

/** This backend cannot resume transfers (the in-memory broker keeps no data for a party that dropped). */
export class ResumeUnsupportedError extends PipeError {
  readonly code = 'RESUME_UNSUPPORTED';
  override name = 'ResumeUnsupportedError';
  constructor() {
    super('Resuming a transfer needs the Redis backend (start the server with --redis).');
  }
}

/** A resume asked for a byte offset that the pipe cannot serve. */
export class ResumeOffsetError extends PipeError {
  readonly code = 'RESUME_OFFSET';
  override name = 'ResumeOffsetError';
  constructor(
    readonly offset: number,
    /** The bytes the pipe can serve or accept from: `[from, to)`; `to` is the committed head. */
    readonly from: number,
    readonly to: number,
    message?: string,
  ) {
    super(
      message ??
        (offset < from
          ? `Byte ${offset} is no longer held by the broker; it can resume from byte ${from} on.`
          : `Byte ${offset} is beyond what the sender has sent so far (${to} bytes).`),
    );
  }
}

/** A resume found no party of that role that dropped out of the pipe, or no transfer to resume at all. */
export class NothingToResumeError extends PipeError {
  readonly code = 'NOTHING_TO_RESUME';
  override name = 'NothingToResumeError';
  constructor(
    readonly path: string,
    readonly reason: 'no-transfer' | 'ended' | 'sender-connected' | 'no-dropped-receiver',
  ) {
    super(
      reason === 'no-transfer'
        ? `No transfer is running on '${path}'; there is nothing to resume.`
        : reason === 'ended'
          ? `The transfer on '${path}' is over; there is nothing to resume.`
          : reason === 'sender-connected'
            ? `The sender of '${path}' is still connected; only a sender that dropped can be resumed.`
            : `No receiver of '${path}' has dropped; only a receiver that dropped can be resumed.`,
    );
  }
}

/** A backend's refusals pass as they are; any other failure of the backend means it cannot serve now. */
export function asPipeError(error: unknown): PipeError {
  return error instanceof PipeError ? error : new BrokerUnavailableError(error);
}
