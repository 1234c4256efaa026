import { z } from 'zod';
import { authSchema, perClientSchema } from './access/access-config.js';
import { isProxyEntry } from './access/client-address.js';
import { selfhealSchema } from './selfheal/selfheal-config.js';

const MiB = 1024 * 1024;
const DAY_MS = 24 * 3600_000;

/** One retention entry: the bounds of every topic whose name is `namespace` or below it. */
const retentionSchema = z
  .object({
    /** A topic name prefix on segment boundaries (`fleet`, `fleet/eu`); `""` matches every topic. */
    namespace: z
      .string()
      .max(200)
      .regex(/^$|^[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/, 'expected a topic name prefix'),
    /** Records a topic keeps at most. */
    maxRecords: z.number().int().min(1).max(100_000_000),
    /** Bytes of records a topic keeps at most. */
    maxBytes: z
      .number()
      .int()
      .min(1)
      .max(64 * 1024 * MiB),
    /** Records older than this are dropped. */
    maxAgeMs: z
      .number()
      .int()
      .min(1000)
      .max(3650 * DAY_MS),
  })
  .strict();

/** The bound of every topic no other entry names. */
const DEFAULT_RETENTION = { namespace: '', maxRecords: 100_000, maxBytes: 64 * MiB, maxAgeMs: 7 * DAY_MS };

/**
 * The one typed configuration of edgepipe. Adapters and the CLI gather it (file, env, flags), validate it
 * here once, and hand the result to `createApp`; library code never reads the environment.
 */
export const configSchema = z
  .object({
    server: z
      .object({
        /** Interface the Node adapter listens on. */
        host: z.string().min(1).default('0.0.0.0'),
        /** TCP port; 0 picks a free one. */
        port: z.number().int().min(0).max(65535).default(8080),
        /** After SIGTERM: how long running transfers may take to finish before they are cut. */
        shutdownGraceMs: z.number().int().min(0).default(30_000),
        /** Largest request head (request line plus headers) a client may send, in bytes (answered 431). */
        maxHeaderBytes: z
          .number()
          .int()
          .min(1024)
          .max(1 * MiB)
          .default(16 * 1024),
        /** A client must send its whole request head within this (Node; a half-open connection is dropped). */
        headersTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
        /**
         * Proxies whose `X-Forwarded-For` names the client (addresses, CIDR ranges, or `loopback`). Requests
         * from anywhere else count against their own address, whatever they claim.
         */
        trustProxies: z
          .array(
            z.string().refine(isProxyEntry, { message: 'expected an IP address, a CIDR range or loopback' }),
          )
          .default([]),
        /**
         * Serve HTTPS directly (Node): PEM files of the certificate chain and its key. HTTP/2 and HTTP/1.1 share
         * the port; each client's TLS handshake (ALPN) picks one.
         */
        tls: z
          .object({ cert: z.string().min(1), key: z.string().min(1) })
          .strict()
          .optional(),
        /**
         * Serve cleartext HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1 (Node), for a proxy in front
         * that speaks it upstream. HTTP/1 clients cannot use such a port.
         */
        h2c: z.boolean().default(false),
      })
      .strict()
      .refine((server) => !(server.h2c && server.tls), {
        message: 'h2c is cleartext HTTP/2; with tls, HTTP/2 is offered through ALPN already',
        path: ['h2c'],
      })
      .prefault({}),
    auth: authSchema.prefault({}),
    broker: z
      .object({
        /**
         * Bytes one pipe may hold between its sender and its slowest receiver before the sender is paused.
         * Defaults to 1 MiB in memory and 8 MiB in Redis (where a round trip per chunk needs a deeper window).
         */
        windowBytes: z
          .number()
          .int()
          .min(16 * 1024)
          .max(1024 * MiB)
          .optional(),
        /** `redis://` URL of the Redis that makes instances stateless; without it, pipes live in memory. */
        redis: z
          .string()
          .regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL')
          .optional(),
        /**
         * Redis backend: how long a sender or receiver that dropped mid-transfer keeps its place for a resume
         * (`?offset=`, `Range`) before the transfer goes on without it (0: no resume, drop at once).
         */
        resumeGraceMs: z
          .number()
          .int()
          .min(0)
          .max(24 * 3600_000)
          .default(30_000),
        /**
         * Redis backend: bytes a receiver's connection may hold between what the server wrote to it and what
         * the client has received (the server's and the client's socket buffers, the client's own buffer).
         * Each receiver's frames are kept this much plus one window behind what was written to it, so a
         * receiver that drops resumes byte-exact. Measured on loopback with `curl --limit-rate` (1 to 16 MB/s):
         * up to 8.6 MiB between a receiver's reported position and curl's file (the kernel grows the receive
         * buffer with the rate, up to `net.ipv4.tcp_rmem`'s 32 MiB here); the default leaves room for more.
         */
        socketBufferBytes: z
          .number()
          .int()
          .min(0)
          .max(1024 * MiB)
          .default(16 * MiB),
        /** `redis://` URL of a standby Redis that `reroute` rules send new pipes to (see `selfheal`). */
        standby: z
          .string()
          .regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL')
          .optional(),
        /**
         * Cloudflare Workers only: where pipes meet. `durable-object`: one Durable Object per pipe path, no
         * Redis needed (bytes stay in the object, a receiver streams the sender's body). `redis`: the Redis of
         * `redis` (a Node instance and a Worker meet on it; resume, self-heal reroutes). Default: `redis` when
         * a Redis is given, `durable-object` otherwise. Other runtimes ignore it.
         */
        workers: z.enum(['durable-object', 'redis']).optional(),
        /**
         * Cloudflare Workers on Durable Objects only: 0, one object per pipe path (a new object for every new
         * path); N, paths hashed over N objects that outlive their pipes, so a pipe on a new path meets in a
         * warm object (lower set-up latency; the pipes of a shard share its one thread and its limits).
         * Change it only while no pipe waits: parties reach different objects across the change.
         */
        objectShards: z.number().int().min(0).max(65_536).default(0),
        /** Seed nodes (`host:port`) of a Redis Cluster, instead of `redis`. */
        cluster: z
          .array(z.string().regex(/^[^:\s]+:\d{1,5}$/, 'expected host:port'))
          .min(1)
          .optional(),
      })
      .strict()
      .refine((broker) => !(broker.redis && broker.cluster), {
        message: 'give either redis or cluster, not both',
      })
      .refine((broker) => !broker.standby || broker.redis || broker.cluster, {
        message: 'a standby needs a primary Redis (redis or cluster)',
        path: ['standby'],
      })
      .prefault({}),
    limits: z
      .object({
        /** Highest `?n=` a pipe may ask for. */
        maxReceivers: z.number().int().min(1).max(1000).default(32),
        /** Longest pipe path, in bytes of its URL-encoded form. */
        maxPathBytes: z.number().int().min(1).max(8192).default(1024),
        /** Pipes (waiting or transferring) this instance holds at once; more are answered 429. */
        maxPipes: z.number().int().min(1).default(10_000),
        /** Requests waiting for their peer at once; more are answered 429. */
        maxWaiting: z.number().int().min(1).default(10_000),
        /** How long a sender or receiver waits for its peer before it is told that nobody came. */
        waitTimeoutMs: z
          .number()
          .int()
          .min(1)
          .default(10 * 60_000),
        /** Largest body one transfer may carry (413 when declared larger, cut when it grows past). */
        maxBodyBytes: z.number().int().min(1).optional(),
        /**
         * Slow-client protection: an upload that delivers nothing, or a download that takes nothing while
         * bytes wait for it, for this long is dropped (0: never). Waiting for the peer does not count.
         */
        idleTimeoutMs: z.number().int().min(0).default(120_000),
        perClient: perClientSchema.prefault({}),
      })
      .strict()
      .prefault({}),
    selfheal: selfhealSchema.prefault({}),
    /** Topics (issue 17, docs/topic-protocol.md): records kept for consumer groups. */
    topics: z
      .object({
        /** Largest record, in bytes (413). */
        maxRecordBytes: z
          .number()
          .int()
          .min(1)
          .max(16 * MiB)
          .default(64 * 1024),
        /** Largest batch, in bytes after decompression (413). */
        maxBatchBytes: z
          .number()
          .int()
          .min(1)
          .max(256 * MiB)
          .default(1 * MiB),
        /** Most records in one batch (413). */
        maxBatchRecords: z.number().int().min(1).max(1_000_000).default(10_000),
        /** How long an `Idempotency-Key` is remembered per topic: a batch sent again within it is not stored. */
        idempotencyWindowMs: z
          .number()
          .int()
          .min(1000)
          .max(30 * DAY_MS)
          .default(DAY_MS),
        /** A record handed to a consumer that has not acknowledged it for this long goes to another one. */
        claimAfterMs: z.number().int().min(100).max(DAY_MS).default(30_000),
        /** Longest long-poll a read may ask for (`wait`). */
        maxWaitMs: z.number().int().min(0).max(600_000).default(60_000),
        /** Topics the server keeps at most (Redis: per namespace); a new one past it is refused (507). */
        maxTopics: z.number().int().min(1).max(10_000_000).default(10_000),
        /** Retention bounds; the longest matching `namespace` wins; `""` (all topics) is added when absent. */
        retention: z
          .array(retentionSchema)
          .max(1000)
          .default([DEFAULT_RETENTION])
          .transform((entries) =>
            entries.some((entry) => entry.namespace === '') ? entries : [...entries, DEFAULT_RETENTION],
          ),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((config, context) => {
    config.selfheal.rules.forEach((rule, index) => {
      if (rule.action === 'reroute' && !config.broker.standby) {
        context.addIssue({
          code: 'custom',
          path: ['selfheal', 'rules', index, 'action'],
          message: 'reroute needs broker.standby (a standby Redis to send new pipes to)',
        });
      }
    });
  });

/** Validated configuration, every default filled in. */
export type Config = z.output<typeof configSchema>;
/** What a config file or caller may write: every key optional. */
export type ConfigInput = z.input<typeof configSchema>;

/** A configuration that failed validation; the message names every bad key. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  override name = 'ConfigError';
}

/**
 * Validates `input` and fills in the defaults.
 * @throws ConfigError naming each bad key, e.g. `limits.maxReceivers: Too big: expected number to be <=1000`.
 */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
    const at = [...issue.path, ...(keys.length === 1 ? keys : [])].join('.');
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown key${keys.length > 1 ? `s ${keys.join(', ')}` : ''}`
        : issue.message;
    return `${at || '(root)'}: ${message}`;
  });
  throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
}
