import type { SenderEvent } from '../broker/types.js';
import { ALL_RECEIVED, partlyReceivedLine } from '../protocol/transcript-lines.js';

/** The transcript line for a broker event. */
export function describeSenderEvent(event: SenderEvent): string {
  switch (event.type) {
    case 'receiver-connected':
      return 'A receiver was connected.';
    case 'receiver-left':
      return `A receiver left before the start; ${event.connected} of ${event.receivers} connected.`;
    case 'receiver-aborted':
      return `A receiver aborted; ${event.remaining} of ${event.receivers} still receiving.`;
  }
}

/**
 * Follows a transfer's receivers through the sender's events, so the transcript's last line says how many
 * received everything instead of claiming all did after one aborted.
 */
export class ReceiverTally {
  private latestAbort: { remaining: number; receivers: number } | undefined;

  /** Takes note of `event` and returns its transcript line. */
  observe(event: SenderEvent): string {
    if (event.type === 'receiver-aborted') this.latestAbort = event;
    return describeSenderEvent(event);
  }

  /** The last line of a transfer whose every byte was sent. */
  sentLine(): string {
    if (!this.latestAbort) return ALL_RECEIVED;
    return partlyReceivedLine(this.latestAbort.remaining, this.latestAbort.receivers);
  }
}
