import { z } from 'zod';

/**
 * What a pipe request asks to do, and what a bearer token's `scopes` list (a token that may do both lists
 * both). A capability URL has one scope, so it spells "both" `both` (see `CAPABILITY_SCOPES`).
 */
export const SCOPES = ['send', 'recv'] as const;
export type Scope = (typeof SCOPES)[number];

/** A path prefix: absolute, no query, no trailing slash except the root itself. */
const prefixSchema = z
  .string()
  .regex(/^\/[^?#\s]*$/, 'expected an absolute path such as /team-a')
  .refine((prefix) => prefix === '/' || !prefix.endsWith('/'), { message: 'drop the trailing slash' });

const tokenSchema = z
  .object({
    /** Who holds it: shown in logs and errors instead of the token itself. */
    name: z.string().min(1).max(100),
    /** The bearer token (`Authorization: Bearer <token>`); long and random. */
    token: z.string().min(16, 'a token needs at least 16 characters'),
    scopes: z.array(z.enum(SCOPES)).min(1),
    /** The namespace: pipes at this path or below it. */
    prefix: prefixSchema.default('/'),
  })
  .strict();

/**
 * Who may use which pipe (`auth` in the config). `open` lets anyone in, as piping-server does; `signed`
 * admits capability URLs (`edgepipe sign`); `token` admits bearer tokens, each scoped to a namespace.
 */
export const authSchema = z
  .object({
    mode: z.enum(['open', 'signed', 'token']).default('open'),
    /**
     * HMAC keys of signed URLs. The first signs; every one verifies, so a key is rotated by putting the new
     * one first and dropping the old one once its URLs have expired.
     */
    secrets: z.array(z.string().min(32, 'a signing secret needs at least 32 characters')).default([]),
    tokens: z.array(tokenSchema).default([]),
    /** Bearer token of `/_/selfheal` and `/_/metrics`; without one they are closed unless `mode` is open. */
    adminToken: z.string().min(16, 'the admin token needs at least 16 characters').optional(),
    /** Serve `/_/metrics` to anyone (e.g. a Prometheus that cannot send a token). */
    metricsPublic: z.boolean().default(false),
    /** Longest lifetime `edgepipe sign` grants, and the farthest expiry a URL may carry. */
    maxTtlSeconds: z
      .number()
      .int()
      .min(1)
      .max(366 * 24 * 3600)
      .default(7 * 24 * 3600),
  })
  .strict()
  .refine((auth) => auth.mode !== 'signed' || auth.secrets.length > 0, {
    message: 'signed mode needs at least one secret (auth.secrets or EDGEPIPE_SECRETS)',
    path: ['secrets'],
  })
  .refine((auth) => auth.mode !== 'token' || auth.tokens.length > 0, {
    message: 'token mode needs at least one token (auth.tokens)',
    path: ['tokens'],
  })
  .refine((auth) => new Set(auth.tokens.map((token) => token.token)).size === auth.tokens.length, {
    message: 'two tokens have the same value',
    path: ['tokens'],
  });

export type AuthConfig = z.output<typeof authSchema>;

/** Per-client limits (`limits.perClient`): what one client address may hold or ask for. */
export const perClientSchema = z
  .object({
    /** Requests per second a client may make on average; 0 turns the rate limit off. */
    requestsPerSecond: z.number().min(0).default(20),
    /** Requests a client may make at once above its average before being answered 429. */
    burst: z.number().int().min(1).default(200),
    /**
     * Pipe requests (waiting or transferring) one client may have open at once: its connections, and the
     * bytes their pipes' windows hold (`broker.windowBytes` each at most).
     */
    maxPipes: z.number().int().min(1).default(500),
    /**
     * Of those, how many may be waiting for their peer at once. Each holds a socket and ~30 KiB (Node,
     * measured), so one client holds ~12 MiB waiting and filling the instance's 10,000 takes 25 addresses.
     * Both ends of a transfer count as waiting until the broker has paired them, so this lets one client set
     * up 200 transfers at once (at 200, concurrent transfers through Redis were refused at the cap).
     */
    maxWaiting: z.number().int().min(1).default(400),
    /** Clients whose counts are kept; beyond it the least recently seen are forgotten. */
    maxTracked: z.number().int().min(100).max(10_000_000).default(100_000),
  })
  .strict();

export type PerClientLimits = z.output<typeof perClientSchema>;
