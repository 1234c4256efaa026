const encoder = new TextEncoder();

/**
 * The sender's response body: `[INFO] ...` and `[ERROR] ...` lines a curl user reads while the transfer runs.
 * Lines written before the client reads are queued; there are a handful per transfer (at most a few per
 * receiver), so the queue stays small.
 */
export class Transcript {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private closed = false;
  readonly stream: ReadableStream<Uint8Array>;

  constructor() {
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => {
        this.closed = true;
      },
    });
  }

  info(line: string): void {
    this.write(`[INFO] ${line}\n`);
  }

  error(line: string): void {
    this.write(`[ERROR] ${line}\n`);
  }

  /** Ends the transcript cleanly. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller.close();
  }

  private write(text: string): void {
    if (!this.closed) this.controller.enqueue(encoder.encode(text));
  }
}
