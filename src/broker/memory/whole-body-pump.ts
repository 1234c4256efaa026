import { ClientIdleError } from '../../byte-source-guards.js';
import type { Clock } from '../../clock.js';
import { ReceiversGoneError } from '../errors.js';

/**
 * Moves a body handed over whole (`SenderSession.startStream`) into its pass-through. Without an idle timeout
 * it is one native `pipeTo` (no JS per chunk). With one, a read loop that notes when each read started: the
 * sender is idle when a read has waited `idleMs` (waiting on the write, i.e. on the receiver, is not the
 * sender's idleness, as in `limitedUpload`). A pipeTo cannot be watched, since no JS sees its chunks.
 *
 * Settles when the body is through; rejects with `ClientIdleError` (both sides cut: the receiver's stream is
 * aborted with it, the body cancelled) or `ReceiversGoneError` when either side failed (see `startStream`).
 */
export async function pumpWholeBody(
  body: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  clock: Clock,
  idleMs: number,
): Promise<void> {
  if (idleMs <= 0) {
    try {
      await body.pipeTo(writable);
      return;
    } catch {
      throw new ReceiversGoneError();
    }
  }
  const reader = chunkReader(body);
  const writer = writable.getWriter();
  let readingSince: number | undefined;
  let idle: ClientIdleError | undefined;
  let cancelTimer: () => void = () => {};
  // One timer for the whole body, re-armed for the latest read's due time (a read is one piece of the body).
  const watch = (due: number) => {
    cancelTimer = clock.setTimeout(
      () => {
        if (readingSince === undefined) return watch(clock.now() + idleMs);
        const dueNow = readingSince + idleMs;
        if (clock.now() < dueNow) return watch(dueNow);
        idle = new ClientIdleError(`The upload sent nothing for ${Math.round(idleMs / 1000)} s.`);
        writer.abort(idle).catch(() => {});
        reader.cancel().catch(() => {});
      },
      Math.max(0, due - clock.now()),
    );
  };
  watch(clock.now() + idleMs);
  try {
    for (;;) {
      readingSince = clock.now();
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        if (idle) throw idle;
        // The sender's body failed: the receiver's stream fails with it.
        writer.abort(new Error('The sender aborted the upload.')).catch(() => {});
        throw new ReceiversGoneError();
      }
      readingSince = undefined;
      if (idle) throw idle;
      if (chunk.done) break;
      try {
        await writer.write(chunk.value);
      } catch {
        if (idle) throw idle;
        reader.cancel().catch(() => {});
        throw new ReceiversGoneError();
      }
    }
    try {
      await writer.close();
    } catch {
      throw new ReceiversGoneError();
    }
  } finally {
    cancelTimer();
  }
}

/**
 * Bytes a read may take at once where the body is a byte stream (workerd's request bodies are). A body of
 * declared length arrives in large pieces: 256 MiB through one object with curl at both ends moved 392 MiB/s
 * (median of 7 interleaved rounds) with reads of up to 64 KiB, 516 with 256 KiB and 423 with 1 MiB; a native
 * pipe, unwatched, 665-744 (issue 16). Chunked bodies arrive in smaller pieces and did not move.
 */
const MAX_READ_BYTES = 256 * 1024;
/** A read's first buffer, and the least one holds. */
const MIN_READ_BYTES = 8 * 1024;
/** Reads in a row that took under a sixteenth of their buffer before the buffer halves. */
const SHRINK_AFTER = 8;

/**
 * Reads of up to `MAX_READ_BYTES` where the body is a byte stream: a BYOB read takes whatever has arrived.
 * Its buffer doubles whenever a read fills it, and halves only after `SHRINK_AFTER` reads in a row that took
 * under a sixteenth of it. Behind wrangler dev's proxy a chunked body arrived in 24- and 4072-byte pieces, and
 * a fixed 64 KiB buffer per read allocated and zeroed 16 times the bytes moved (75 s of CPU per GiB against
 * 45). workerd alone hands 8-32 KiB pieces between pieces of 7 to 24 bytes, and a buffer sized after the last
 * read fell back to 8 KiB after each of those: 22,000 reads per 256 MiB chunked, 108-160 MiB/s through one
 * object against 157-249 with this policy, four interleaved rounds (issue 16). A plain stream is read as it is.
 */
function chunkReader(body: ReadableStream<Uint8Array>): {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(): Promise<void>;
} {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: 'byob' });
  } catch {
    return body.getReader();
  }
  const reader = byob;
  let size = MIN_READ_BYTES;
  let smallReads = 0;
  return {
    read: async () => {
      const result = await reader.read(new Uint8Array(size));
      if (result.done) return { done: true, value: undefined };
      const took = result.value.byteLength;
      if (took === size) {
        size = Math.min(MAX_READ_BYTES, 2 * size);
        smallReads = 0;
      } else if (took >= size / 16) {
        smallReads = 0;
      } else if (++smallReads === SHRINK_AFTER) {
        size = Math.max(MIN_READ_BYTES, size / 2);
        smallReads = 0;
      }
      return { done: false, value: result.value };
    },
    cancel: () => reader.cancel(),
  };
}
