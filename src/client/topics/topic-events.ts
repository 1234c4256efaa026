/** What the topic client tells its user while it runs; the CLI prints it, tests read it. */
export type TopicEvent =
  /** A request failed; the next try starts in `inMs`. */
  | { readonly type: 'retrying'; readonly reason: string; readonly inMs: number; readonly attempt: number }
  /** A batch was stored (or had been: `replay`). */
  | { readonly type: 'published'; readonly key: string; readonly records: number; readonly replay: boolean }
  /** A line worth showing as it is. */
  | { readonly type: 'notice'; readonly text: string };
