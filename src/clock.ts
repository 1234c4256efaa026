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

/** The reason a `deadlineSignal` aborts with. */
export class DeadlineError extends Error {
  readonly code = 'DEADLINE';
  override name = 'DeadlineError';
}

/**
 * A signal that aborts when `parent` aborts or after `ms` on `clock`, whichever comes first. Call `dispose`
 * once the wait is over so neither the timer nor the listener outlives it.
 */
export function deadlineSignal(
  clock: Clock,
  ms: number,
  parent: AbortSignal,
): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onParentAbort = () => controller.abort(parent.reason);
  if (parent.aborted) onParentAbort();
  else parent.addEventListener('abort', onParentAbort, { once: true });
  const cancelTimer = clock.setTimeout(
    () => controller.abort(new DeadlineError(`no peer within ${ms} ms`)),
    ms,
  );
  return {
    signal: controller.signal,
    dispose() {
      cancelTimer();
      parent.removeEventListener('abort', onParentAbort);
    },
  };
}
