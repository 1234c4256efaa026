/** What a tunnel tells its user: the CLI prints it, tests read it. */
export type TunnelEvent =
  /** The exposing side's control slots are waiting (again, after `reconnects` breaks). */
  | { readonly type: 'listening'; readonly reconnects: number }
  /** The broker could not be reached; trying again. */
  | { readonly type: 'retrying'; readonly reason: string; readonly inMs: number }
  | { readonly type: 'opened'; readonly id: string; readonly setupMs: number }
  | {
      readonly type: 'closed';
      readonly id: string;
      /** How it ended: both sides closed, one reset, or it never opened. */
      readonly how: 'closed' | 'reset' | 'refused' | 'failed';
      readonly reason: string;
      /** Bytes read from the local side and sent, and received and written to it. */
      readonly sent: number;
      readonly received: number;
    };
