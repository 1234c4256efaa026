import type { SenderEvent } from '../broker/types.js';

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
