import { z } from 'zod';
import { METRICS } from './latency-windows.js';

const hookSchema = z
  .object({
    /** Receives a POST with the event as JSON. */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** Signs the webhook body: `X-Edgepipe-Signature: sha256=<hex HMAC-SHA256>`. */
    secret: z.string().min(1).optional(),
    /** argv of a command run without a shell, the event in its environment. */
    command: z.array(z.string().min(1)).min(1).optional(),
    /** Budget of each, retries included; a command still running then is killed. */
    timeoutMs: z.number().int().min(1).max(300_000).default(5000),
  })
  .strict()
  .refine((hook) => hook.url || hook.command, { message: 'give a url, a command or both' });

const ruleSchema = z
  .object({
    name: z.string().min(1).max(100),
    metric: z.enum(METRICS),
    /** Which quantile of a window is judged. */
    quantile: z.number().gt(0).max(1).default(0.99),
    /** A window breaches when its quantile is above this. */
    aboveMs: z.number().positive(),
    /** Consecutive breaching windows that fire the action; a healthy window starts the count again. */
    forWindows: z.number().int().min(1).max(1000).default(3),
    /** Fewer samples than this make a window neither breaching nor healthy. */
    minSamples: z.number().int().min(1).default(10),
    action: z.enum(['reroute', 'rollback', 'notify']),
    /** After a reroute: windows must be below this (default: `aboveMs`) to come back... */
    recoverBelowMs: z.number().positive().optional(),
    /** ...for this many consecutive windows. */
    recoverForWindows: z.number().int().min(1).max(1000).default(5),
    /** No action of this rule within this long after the last one. */
    cooldownMs: z.number().int().min(0).default(30_000),
    /** And at most this many in any hour. */
    maxActionsPerHour: z.number().int().min(1).default(6),
    /** Record what would happen, do nothing. */
    dryRun: z.boolean().default(false),
    hook: hookSchema.optional(),
  })
  .strict()
  .superRefine((rule, context) => {
    if (rule.action !== 'reroute' && !rule.hook) {
      context.addIssue({ code: 'custom', path: ['hook'], message: `a ${rule.action} rule needs a hook` });
    }
    if (rule.recoverBelowMs !== undefined && rule.recoverBelowMs > rule.aboveMs) {
      context.addIssue({
        code: 'custom',
        path: ['recoverBelowMs'],
        message: 'must not be above aboveMs (hysteresis)',
      });
    }
  });

/** The `selfheal` section of the config. */
export const selfhealSchema = z
  .object({
    /** Window length: every interval the windows close and every rule is judged. */
    intervalMs: z.number().int().min(50).max(3_600_000).default(1000),
    /** A Redis probe slower than this counts as this slow (a dead Redis must look slow, not silent). */
    probeTimeoutMs: z.number().int().min(1).default(1000),
    /** Audit entries kept (in Redis when configured, else in memory). */
    auditSize: z.number().int().min(1).max(100_000).default(200),
    rules: z.array(ruleSchema).default([]),
  })
  .strict()
  .superRefine((selfheal, context) => {
    const seen = new Set<string>();
    selfheal.rules.forEach((rule, index) => {
      if (seen.has(rule.name)) {
        context.addIssue({ code: 'custom', path: ['rules', index, 'name'], message: 'names must be unique' });
      }
      seen.add(rule.name);
    });
  });

export type SelfhealConfig = z.output<typeof selfhealSchema>;
export type RuleConfig = SelfhealConfig['rules'][number];
