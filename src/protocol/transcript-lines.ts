// The lines of a sender's transcript that carry meaning for a program, not only for a person: the server
// writes them and the edgepipe client reads them, so they are spelled once, here. They are piping-server's
// own words (its clients parse them too), which is why they keep its grammar.

/** A transcript line's level, as its prefix: `[INFO] ...` or `[ERROR] ...`. */
export const INFO_PREFIX = '[INFO] ';
export const ERROR_PREFIX = '[ERROR] ';

/** The transfer begins: every receiver is there. `Start sending to N receiver(s)!` */
export const startSendingLine = (receivers: number) => `Start sending to ${receivers} receiver(s)!`;
export const START_SENDING = /^Start sending to (\d+) receiver\(s\)!$/;

/** A resumed sender's transfer continues. `Resuming the transfer at byte N.` */
export const resumingLine = (offset: number) => `Resuming the transfer at byte ${offset}.`;
export const RESUMING = /^Resuming the transfer at byte (\d+)\.$/;

/** Every receiver got every byte: the one line that means success. */
export const ALL_RECEIVED = 'All receiver(s) was/were received successfully.';

/** Some receivers left before the end. `K of N receiver(s) received everything; M aborted.` */
export const partlyReceivedLine = (remaining: number, receivers: number) =>
  `${remaining} of ${receivers} receiver(s) received everything; ${receivers - remaining} aborted.`;
export const PARTLY_RECEIVED = /^(\d+) of (\d+) receiver\(s\) received everything; (\d+) aborted\.$/;

/** Every receiver left before the end (an `[ERROR]` line). */
export const ALL_RECEIVERS_GONE = 'All receiver(s) was/were closed halfway.';

/** Nobody came within the server's wait limit (an `[ERROR]` line): a client waits again. */
export const NO_RECEIVER_CAME = /^No receiver came within \d+ s\.$/;
export const noReceiverCameLine = (seconds: number) => `No receiver came within ${seconds} s.`;

/**
 * A piece of the body (`Upload-Complete: ?0`) was received and every byte of it is committed: the last
 * line of that piece's transcript. `Piece received: continue from byte N with ?offset=N.`
 */
export const pieceReceivedLine = (offset: number) =>
  `Piece received: continue from byte ${offset} with ?offset=${offset}.`;
export const PIECE_RECEIVED = /^Piece received: continue from byte (\d+) with \?offset=\1\.$/;
