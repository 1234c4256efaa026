/**
 * Firing a rule's hook: its webhook and its command side by side, each bounded by the hook's budget and each
 * reported rather than thrown, so one failing never hides what the other did.
 */
import type { CommandRunner, HookConfig, HookOutcome, SelfHealEvent } from './hook-types.js';
import { postWebhook } from './webhook.js';

// The audit line quotes the command's last words, not its log.
const MAX_OUTPUT_CHARS = 200;

/**
 * Runs the webhook (when `hook.url` is set) and the command (when `hook.command` is) concurrently and returns
 * their outcomes, webhook first; never throws. Commands need `runCommand`, which only runtimes with processes
 * provide; without it a configured command fails with an outcome saying so rather than being skipped quietly.
 */
export async function runHook(
  hook: HookConfig,
  event: SelfHealEvent,
  options: { runCommand?: CommandRunner; fetch?: typeof fetch } = {},
): Promise<HookOutcome[]> {
  const outcomes: Promise<HookOutcome>[] = [];
  if (hook.url) {
    outcomes.push(
      postWebhook(hook.url, event, { secret: hook.secret, timeoutMs: hook.timeoutMs, fetch: options.fetch }),
    );
  }
  if (hook.command) outcomes.push(runCommandHook(hook.command, event, hook.timeoutMs, options.runCommand));
  return Promise.all(outcomes);
}

/** The environment a hook command gets: the whole event as JSON, and its main fields for simple scripts. */
function commandEnv(event: SelfHealEvent): Record<string, string> {
  return {
    EDGEPIPE_EVENT: JSON.stringify(event),
    EDGEPIPE_RULE: event.rule,
    EDGEPIPE_METRIC: event.metric,
    EDGEPIPE_ACTION: event.action,
    EDGEPIPE_VALUE_MS: String(event.valueMs),
    EDGEPIPE_THRESHOLD_MS: String(event.thresholdMs),
    EDGEPIPE_INSTANCE: event.instance,
  };
}

async function runCommandHook(
  argv: readonly string[],
  event: SelfHealEvent,
  timeoutMs: number,
  runner: CommandRunner | undefined,
): Promise<HookOutcome> {
  const started = Date.now();
  const failed = (detail: string): HookOutcome => ({
    kind: 'command',
    ok: false,
    detail,
    durationMs: Date.now() - started,
  });
  if (!runner) return failed('commands cannot run on this runtime');
  if (argv.length === 0) return failed('empty command');

  let result: Awaited<ReturnType<CommandRunner>>;
  try {
    result = await runner(argv, commandEnv(event), timeoutMs);
  } catch (error) {
    return failed(
      oneLine(error instanceof Error ? error.message : String(error)) || 'command failed to start',
    );
  }

  const status = result.timedOut
    ? `killed after ${timeoutMs} ms (timeout)`
    : result.signal
      ? `killed by ${result.signal}`
      : `exit ${result.exitCode}`;
  const said = lastLine(result.output);
  return {
    kind: 'command',
    ok: !result.timedOut && result.exitCode === 0,
    detail: said ? `${status}: ${said}` : status,
    durationMs: Date.now() - started,
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
  };
}

/** The last non-blank line of `output`, cleaned of control characters and cut to fit an audit line. */
function lastLine(output: string): string {
  const lines = output.split(/\r?\n|\r/);
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = oneLine(lines[i]!);
    if (line) return line;
  }
  return '';
}

function oneLine(text: string): string {
  const line = text
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return line.length > MAX_OUTPUT_CHARS ? `${line.slice(0, MAX_OUTPUT_CHARS - 1)}…` : line;
}
