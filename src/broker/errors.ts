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
  constructor(readonly limit: 'pipes' | 'waiting') {
    super(
      limit === 'pipes'
        ? 'Too many pipes on this server; try again later.'
        : 'Too many requests waiting on this server; try again later.',
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
    super('All receiver(s) was/were closed halfway.');
  }
}

/** The broker's backend (Redis) cannot be reached right now; new pipes are refused until it is back. */
export class BrokerUnavailableError extends PipeError {
  readonly code = 'BROKER_UNAVAILABLE';
  override name = 'BrokerUnavailableError';
  constructor(cause?: unknown) {
    super('The pipe broker is unavailable (its Redis cannot be reached); try again shortly.', { cause });
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
