/** What went through this instance since it started, for `/_/metrics`. */
export class TrafficCounters {
  /** Body bytes taken from senders. */
  bytesIn = 0;
  /** Body bytes handed to receivers. */
  bytesOut = 0;
  readonly transfers = { completed: 0, failed: 0, receiversGone: 0 };
  /** Responses by status code. */
  readonly responses = new Map<number, number>();

  response(status: number): void {
    this.responses.set(status, (this.responses.get(status) ?? 0) + 1);
  }
}
