import { SingleBar } from 'cli-progress';
import { formatBytes } from '../client/format-bytes.js';
import type { TransferEvent } from '../client/transfer-events.js';

/** How progress is shown: a bar on a terminal, one JSON object a second for scripts, or nothing. */
export type ProgressMode = 'bar' | 'json' | 'none';

/** `--progress` and `-q` against what stderr is: a bar only on a terminal. */
export function progressModeOf(flag: string | undefined, quiet: boolean, stderrIsTty: boolean): ProgressMode {
  if (quiet) return 'none';
  if (flag === 'json') return 'json';
  if (flag === 'none') return 'none';
  if (flag === 'bar') return 'bar';
  return stderrIsTty ? 'bar' : 'none';
}

/** Where progress goes: stderr and the clock, injected for tests. */
export interface ProgressOutput {
  write(text: string): void;
  now(): number;
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The rate over the last few seconds (a whole-transfer average would hide a stall). */
class RateMeter {
  private readonly samples: Array<{ at: number; bytes: number }> = [];

  add(at: number, bytes: number): void {
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && at - this.samples[0]!.at > 5000) this.samples.shift();
  }

  perSecond(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at === first.at) return 0;
    return Math.max(0, ((last.bytes - first.bytes) * 1000) / (last.at - first.at));
  }
}

/**
 * Follows a transfer's events and shows them. The terminal bar is drawn by cli-progress (redraw, terminal
 * width, throttling); the figures (rate, ETA) are computed here from a sliding window.
 */
export class ProgressView {
  private state: 'waiting' | 'transferring' | 'retrying' = 'waiting';
  private detail = '';
  private bytes = 0;
  private total: number | undefined;
  private resumes = 0;
  private readonly rate = new RateMeter();
  private bar: SingleBar | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;

  /**
   * `notices`: whether notices (retries, "this server cannot resume") are printed where no progress is
   * shown (`--progress none`, or stderr not a terminal): as plain lines, so a script's log keeps them.
   */
  constructor(
    private readonly mode: ProgressMode,
    private readonly output: ProgressOutput,
    private readonly notices = false,
  ) {
    if (mode === 'json') this.ticker = setInterval(() => this.emitJson(), 1000);
    if (mode === 'bar') {
      this.bar = new SingleBar({
        format: (_options, params) => this.line(params.value),
        hideCursor: false,
        clearOnComplete: false,
        stream: { write: (text: string) => output.write(text), isTTY: true } as never,
        fps: 5,
        noTTYOutput: false,
      });
      this.bar.start(1, 0);
    }
  }

  /** Feeds one event. */
  on(event: TransferEvent): void {
    const now = this.output.now();
    switch (event.type) {
      case 'waiting':
        this.state = 'waiting';
        this.detail = `waiting for ${event.detail}`;
        break;
      case 'started':
        this.state = 'transferring';
        this.total = event.total;
        this.detail = '';
        break;
      case 'progress':
        // A sender's body is read into socket buffers before any receiver comes: those bytes do not end the
        // wait (only 'started' does), or the bar would show a stalled transfer instead of what it waits for.
        if (this.state !== 'waiting') this.state = 'transferring';
        this.bytes = event.bytes;
        this.rate.add(now, event.bytes);
        break;
      case 'retrying':
        this.state = 'retrying';
        this.detail = `${event.reason}: retrying in ${(event.inMs / 1000).toFixed(1)} s (attempt ${event.attempt})`;
        this.notice(this.detail);
        break;
      case 'resumed':
        // Not waiting for a peer: a continued transfer's bytes are progress from its first one.
        if (this.state === 'waiting') this.state = 'retrying';
        this.resumes += 1;
        this.detail = `resuming at byte ${event.offset}`;
        break;
      case 'notice':
        this.notice(event.text);
        break;
    }
    this.bar?.update(this.bytes);
  }

  /** Ends the display; `outcome` is the last line a terminal user sees. */
  finish(outcome: string): void {
    if (this.ticker) clearInterval(this.ticker);
    if (this.mode === 'json') this.emitJson(outcome);
    if (this.bar) {
      this.bar.update(this.bytes);
      this.bar.stop();
      this.output.write(`${outcome}\n`);
    }
  }

  private notice(text: string): void {
    if (this.mode === 'bar') this.output.write(`\r\x1b[K${text}\n`);
    if (this.mode === 'json') this.output.write(`${JSON.stringify({ notice: text })}\n`);
    if (this.mode === 'none' && this.notices) this.output.write(`edgepipe: ${text}\n`);
  }

  private line(value: number): string {
    if (this.state === 'waiting' || this.state === 'retrying') return this.detail;
    const perSecond = this.rate.perSecond();
    const figures = `${formatBytes(value)}${this.total !== undefined ? ` / ${formatBytes(this.total)}` : ''}  ${formatBytes(perSecond)}/s`;
    if (this.total === undefined || this.total === 0) return figures;
    const share = Math.min(1, value / this.total);
    const width = 24;
    const filled = Math.round(share * width);
    const eta = perSecond > 0 ? (this.total - value) / perSecond : Number.POSITIVE_INFINITY;
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}%  ${figures}  ETA ${formatSeconds(eta)}`;
  }

  private emitJson(outcome?: string): void {
    const perSecond = this.rate.perSecond();
    const eta =
      this.total !== undefined && perSecond > 0 ? Math.round((this.total - this.bytes) / perSecond) : null;
    this.output.write(
      `${JSON.stringify({
        state: outcome === undefined ? this.state : 'done',
        bytes: this.bytes,
        total: this.total ?? null,
        rate: Math.round(perSecond),
        eta,
        resumes: this.resumes,
        ...(outcome === undefined ? {} : { outcome }),
      })}\n`,
    );
  }
}
