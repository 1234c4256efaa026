import { formatBytes } from '../client/format-bytes.js';
import type { TransferEvent } from '../client/transfer-events.js';

/** The elements one side of the page shows a transfer in. */
export interface ViewElements {
  readonly progress: HTMLProgressElement;
  /** Bytes, rate and time left, updated often (not announced). */
  readonly figures: HTMLElement;
  /** A live region: what changed (waiting, started, done, errors), announced by screen readers. */
  readonly status: HTMLElement;
}

/** The span of the rate's sliding window. */
const RATE_WINDOW_MS = 3000;

/**
 * Draws a transfer: the waiting state, progress with rate and time left, and its end in words. Announces
 * states, and the progress only every quarter, so a screen reader is not flooded.
 */
export class TransferView {
  private total: number | undefined;
  private bytes = 0;
  private samples: Array<{ at: number; bytes: number }> = [];
  private announcedQuarter = 0;

  constructor(private readonly elements: ViewElements) {}

  reset(): void {
    this.total = undefined;
    this.bytes = 0;
    this.samples = [];
    this.announcedQuarter = 0;
    this.elements.progress.hidden = true;
    this.elements.progress.removeAttribute('value');
    this.elements.figures.textContent = '';
  }

  /** A state in words, announced. */
  say(text: string): void {
    this.elements.status.textContent = text;
  }

  setTotal(total: number | undefined): void {
    this.total = total;
    this.elements.progress.hidden = false;
    if (total !== undefined) this.elements.progress.max = Math.max(total, 1);
    this.draw();
  }

  /** Plaintext bytes done so far. */
  moved(bytes: number): void {
    this.bytes = bytes;
    const now = performance.now();
    this.samples.push({ at: now, bytes });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    this.draw();
  }

  /** The core's events, in words and figures. */
  onEvent(event: TransferEvent, role: 'send' | 'receive'): void {
    switch (event.type) {
      case 'waiting':
        this.say(role === 'send' ? `Waiting for ${event.detail}...` : 'Waiting for the sender...');
        break;
      case 'started':
        this.setTotal(event.total);
        this.say(role === 'send' ? 'Sending...' : 'Receiving...');
        break;
      case 'progress':
        this.moved(event.bytes);
        break;
      case 'retrying':
        this.say(`${event.reason}; trying again in ${Math.ceil(event.inMs / 1000)} s.`);
        break;
      case 'resumed':
        this.say(`Resumed at byte ${event.offset}.`);
        break;
      case 'notice':
        break;
    }
  }

  private draw(): void {
    const { progress, figures } = this.elements;
    if (this.total !== undefined) progress.value = Math.min(this.bytes, this.total);
    const rate = this.rate();
    const parts = [
      this.total === undefined
        ? formatBytes(this.bytes)
        : `${formatBytes(this.bytes)} of ${formatBytes(this.total)}`,
    ];
    if (rate > 0) parts.push(`${formatBytes(rate)}/s`);
    if (rate > 0 && this.total !== undefined && this.bytes < this.total) {
      parts.push(`${duration((this.total - this.bytes) / rate)} left`);
    }
    figures.textContent = parts.join(' · ');
    if (this.total) {
      const quarter = Math.floor((this.bytes / this.total) * 4);
      if (quarter > this.announcedQuarter && quarter < 4) {
        this.announcedQuarter = quarter;
        this.say(`${quarter * 25}% done.`);
      }
    }
  }

  /** Bytes per second over the sliding window. */
  private rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < 200) return 0;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

function duration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min`;
}
