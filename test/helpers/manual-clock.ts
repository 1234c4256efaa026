import type { Clock } from '../../src/clock.js';

/** A clock that moves only when the test says so. */
export class ManualClock implements Clock {
  private time = 0;
  private timers: Array<{ at: number; fn: () => void; active: boolean }> = [];

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): () => void {
    const timer = { at: this.time + ms, fn, active: true };
    this.timers.push(timer);
    return () => {
      timer.active = false;
    };
  }

  /** Moves time forward, firing every timer that falls due, in order. */
  advance(ms: number): void {
    this.time += ms;
    const due = this.timers.filter((t) => t.active && t.at <= this.time).sort((a, b) => a.at - b.at);
    this.timers = this.timers.filter((t) => t.active && t.at > this.time);
    for (const timer of due) timer.fn();
  }

  /**
   * Moves time forward without firing anything, as a busy event loop or a process the machine did not
   * schedule sees it: the timers that fell due fire at the next `advance`.
   */
  stall(ms: number): void {
    this.time += ms;
  }

  /** Timers still waiting to fire. */
  get pending(): number {
    return this.timers.filter((t) => t.active).length;
  }
}
