/**
 * What a self-heal action hands to the outside world: the event (a webhook's JSON body, a command's
 * environment) and what came back.
 */

/** Where a `rollback` or `notify` rule reports: a webhook, a command, or both. */
export interface HookConfig {
  /** Receives a POST with the event as JSON. */
  readonly url?: string | undefined;
  /** Signs the webhook body (HMAC-SHA256, hex) in `X-Edgepipe-Signature: sha256=<hex>`. */
  readonly secret?: string | undefined;
  /** argv of a command to run (no shell), with the event in its environment. */
  readonly command?: readonly string[] | undefined;
  /** Budget for each of them, retries included; a command still running then is killed. */
  readonly timeoutMs: number;
}

/** One self-heal decision that fired an action, as hooks see it. */
export interface SelfHealEvent {
  readonly rule: string;
  readonly metric: string;
  readonly action: 'reroute' | 'recover' | 'rollback' | 'notify';
  readonly quantile: number;
  /** The window's quantile value that breached (or recovered), in ms. */
  readonly valueMs: number;
  readonly thresholdMs: number;
  /** Consecutive windows that led to the decision. */
  readonly windows: number;
  readonly instance: string;
  /** ISO 8601. */
  readonly time: string;
}

/** What one hook did. */
export interface HookOutcome {
  readonly kind: 'webhook' | 'command';
  readonly ok: boolean;
  /** One line for the audit trail, e.g. `HTTP 200 after 2 attempts` or `exit 3`. */
  readonly detail: string;
  readonly durationMs: number;
  readonly attempts?: number;
  readonly status?: number;
  readonly exitCode?: number | null;
  readonly signal?: string | null;
  readonly timedOut?: boolean;
}

/** Runs a command without a shell; provided by runtimes that can (the Node adapter). */
export type CommandRunner = (
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
  timeoutMs: number,
) => Promise<{ exitCode: number | null; signal: string | null; timedOut: boolean; output: string }>;
