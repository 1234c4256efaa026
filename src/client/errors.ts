// Every way a transfer ends badly, as a small class with a code. The CLI maps the code to an exit status
// (docs/client.md, "Exit codes"); the page shows the message. Matched by class or code, never by text.

/** Why a transfer ended without delivering every byte. */
export type TransferFailure = 'usage' | 'refused' | 'gave-up' | 'integrity' | 'peer-aborted';

/** A transfer that did not complete; `message` is one line a user can act on. */
export class TransferError extends Error {
  constructor(
    readonly code: TransferFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransferError';
  }
}

/** A bad option or argument: nothing was attempted. */
export class UsageError extends TransferError {
  constructor(message: string) {
    super('usage', message);
  }
}

/** The server refused the request for good (a 4xx other than 408/429): retrying would not help. */
export class RefusedError extends TransferError {
  constructor(
    readonly status: number,
    reason: string,
  ) {
    super('refused', `the server refused it (${status}): ${reason}`);
  }
}

/** The network or the server kept failing until the retry budget was spent, or resuming was impossible. */
export class GaveUpError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('gave-up', message, options);
  }
}

/** The bytes are not what was sent: a cut body, a digest mismatch, a failed decryption, a changed file. */
export class IntegrityError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('integrity', message, options);
  }
}

/** The other side gave up: every receiver left, or the sender aborted. */
export class PeerAbortedError extends TransferError {
  constructor(message: string) {
    super('peer-aborted', message);
  }
}
