/**
 * A byte transform as a readable/writable pair: what `pipeThrough` takes, and what a TransformStream is.
 * Openers and unframers return one of these rather than a TransformStream for one reason: a TransformStream
 * that errors discards the output still queued on its readable side, so plaintext that had authenticated
 * would be lost to the receiver (and with it resume progress). Here the readable side delivers everything
 * emitted before an error, then the error.
 */
export interface ByteTransform {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/** The steps of a draining transform; both may emit output, and throw to fail the stream. */
export interface TransformSteps {
  push(piece: Uint8Array, emit: (bytes: Uint8Array) => void): void | Promise<void>;
  /** At the end of input. */
  finish(emit: (bytes: Uint8Array) => void): void | Promise<void>;
}

/**
 * Runs `steps` between a writable and a readable side. A write resolves once its output has been read, so
 * at most one input piece's output is held. Output emitted before a failure reaches the reader first; then
 * the reader sees the error, and the writer too (a pipe into the writable cancels its source).
 */
export function drainingTransform(steps: TransformSteps): ByteTransform {
  const queue: Uint8Array[] = [];
  let ended = false;
  let failure: { error: unknown } | undefined;
  let cancelled: { reason: unknown } | undefined;
  // One promise, replaced at each change of state, wakes every waiter (a reader or a writer).
  let wake!: () => void;
  let changed = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const notify = () => {
    wake();
    changed = new Promise<void>((resolve) => {
      wake = resolve;
    });
  };
  const emit = (bytes: Uint8Array) => {
    queue.push(bytes);
    notify();
  };
  const fail = (error: unknown) => {
    failure ??= { error };
    notify();
  };
  const run = async (step: () => void | Promise<void>) => {
    if (cancelled) throw cancelled.reason;
    try {
      await step();
    } catch (error) {
      fail(error);
      throw error;
    }
  };

  const readable = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        while (!cancelled) {
          const next = queue.shift();
          if (next) {
            controller.enqueue(next);
            notify();
            return;
          }
          if (failure) return controller.error(failure.error);
          if (ended) return controller.close();
          await changed;
        }
      },
      cancel(reason) {
        cancelled = { reason };
        queue.length = 0;
        notify();
      },
    },
    { highWaterMark: 0 },
  );

  const writable = new WritableStream<Uint8Array>({
    async write(piece) {
      await run(() => steps.push(piece, emit));
      while (queue.length > 0 && !cancelled) await changed;
      if (cancelled) throw cancelled.reason;
    },
    async close() {
      await run(() => steps.finish(emit));
      ended = true;
      notify();
    },
    abort(reason) {
      fail(reason);
    },
  });

  return { readable, writable };
}
