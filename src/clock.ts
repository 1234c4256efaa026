/**
 * Time as a dependency: everything whose behaviour depends on time takes a `Clock`, so tests of timeouts and
 * windows run on fake timers in milliseconds.
 */
export interface Clock {
  now(): number;
  /** Runs `fn` after `ms`; the returned function cancels it. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

/** The reason a `withDeadline` wait fails with. */
export class DeadlineError extends Error {
  readonly code = 'DEADLINE';
  override name = 'DeadlineError';
}

/**
 * `promise`, or a `DeadlineError` after `ms` on `clock`, whichever settles first; the timer is cleared either
 * way. (A plain race, not an AbortController: creating abort signals is costly on Node's per-request path.)
 */
export function withDeadline<T>(clock: Clock, ms: number, promise: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = clock.setTimeout(() => reject(new DeadlineError(`nothing within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        cancel();
        resolve(value);
      },
      (error) => {
        cancel();
        reject(error);
      },
    );
  });
}
