import {
  ALL_RECEIVED,
  ALL_RECEIVERS_GONE,
  ERROR_PREFIX,
  INFO_PREFIX,
  NO_RECEIVER_CAME,
  PARTLY_RECEIVED,
  PIECE_RECEIVED,
  RESUMING,
  START_SENDING,
} from '../protocol/transcript-lines.js';

/** What one line of a sender's transcript means to the client. */
export type TranscriptLine =
  | { readonly kind: 'started' }
  | { readonly kind: 'resumed'; readonly offset: number }
  /** A piece of the body was committed; the next one continues at `offset`. */
  | { readonly kind: 'piece'; readonly offset: number }
  | { readonly kind: 'all-received' }
  | { readonly kind: 'partly-received'; readonly received: number; readonly aborted: number }
  | { readonly kind: 'receivers-gone'; readonly text: string }
  | { readonly kind: 'nobody-came'; readonly text: string }
  | { readonly kind: 'error'; readonly text: string }
  | { readonly kind: 'info'; readonly text: string };

/** Reads one transcript line (without its newline). */
export function parseTranscriptLine(line: string): TranscriptLine {
  if (line.startsWith(ERROR_PREFIX)) {
    const text = line.slice(ERROR_PREFIX.length);
    if (text === ALL_RECEIVERS_GONE) return { kind: 'receivers-gone', text };
    if (NO_RECEIVER_CAME.test(text)) return { kind: 'nobody-came', text };
    return { kind: 'error', text };
  }
  const text = line.startsWith(INFO_PREFIX) ? line.slice(INFO_PREFIX.length) : line;
  if (START_SENDING.test(text)) return { kind: 'started' };
  const resumed = RESUMING.exec(text);
  if (resumed) return { kind: 'resumed', offset: Number(resumed[1]) };
  const piece = PIECE_RECEIVED.exec(text);
  if (piece) return { kind: 'piece', offset: Number(piece[1]) };
  if (text === ALL_RECEIVED) return { kind: 'all-received' };
  const partly = PARTLY_RECEIVED.exec(text);
  if (partly) return { kind: 'partly-received', received: Number(partly[1]), aborted: Number(partly[3]) };
  return { kind: 'info', text };
}

/** The longest transcript line kept; a longer one is cut (a transcript is a few short lines). */
const MAX_LINE = 4096;

/** Splits a transcript body into lines as they arrive, calling `onLine` for each (bounded per line). */
export async function readTranscript(
  body: ReadableStream<Uint8Array>,
  onLine: (line: TranscriptLine) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let pending = '';
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    pending += done ? decoder.decode() : decoder.decode(value, { stream: true });
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      onLine(parseTranscriptLine(pending.slice(0, newline).replace(/\r$/, '')));
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
    }
    if (pending.length > MAX_LINE) pending = pending.slice(0, MAX_LINE);
    if (done) {
      if (pending) onLine(parseTranscriptLine(pending));
      return;
    }
  }
}
