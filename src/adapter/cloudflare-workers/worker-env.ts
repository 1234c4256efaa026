import { type Config, ConfigError } from '../../config.js';
import { configFromSources, configObjectOf, isConfigText } from '../../config-sources.js';

/** What `idFromName` gives: an opaque id. */
export type DurableObjectId = unknown;

/** The Durable Object namespace binding of `wrangler.toml` (`[[durable_objects.bindings]]`), as far as used. */
export interface DurableObjectNamespace {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): { fetch(request: Request): Promise<Response> };
}

/** What a Durable Object's constructor is given (`state`), as far as used. */
export interface DurableObjectState {
  readonly id: { toString(): string };
  readonly storage: {
    get<T>(key: string): Promise<T | undefined>;
    put(key: string, value: unknown): Promise<void>;
    getAlarm(): Promise<number | null>;
    setAlarm(time: number): Promise<void>;
  };
}

/** The Worker's bindings: vars and secrets from `wrangler.toml` or the dashboard, and the pipes' objects. */
export interface Env {
  /** `redis://` or `rediss://` URL (a secret: it may hold a password). */
  readonly REDIS_URL?: string;
  /**
   * The JSON config, as its text (a var or secret, `.dev.vars`; `npm run dev:worker` passes a local file's
   * contents) or as a table under `[vars]` in wrangler.toml. `REDIS_URL` beats its `broker.redis`.
   */
  readonly EDGEPIPE_CONFIG?: string | Record<string, unknown>;
  /** Signing secrets of `auth.mode: signed`, comma-separated, the first signs (a secret). */
  readonly EDGEPIPE_SECRETS?: string;
  /** The admin token of `/_/selfheal` and `/_/metrics` (a secret). */
  readonly EDGEPIPE_ADMIN_TOKEN?: string;
  /** The pipes' Durable Objects (`PipeObject`), one per path or shard; absent where wrangler.toml lacks it. */
  readonly PIPES?: DurableObjectNamespace;
  /** The singleton self-heal object (`WatchObject`, `idFromName('selfheal')`); absent where not bound. */
  readonly WATCH?: DurableObjectNamespace;
}

/** The config object of `EDGEPIPE_CONFIG`; a Worker has no files, so a path is refused with the reason. */
function configObject(value: Env['EDGEPIPE_CONFIG']): Record<string, unknown> {
  if (value === undefined || value === '') return {};
  if (typeof value === 'object') return value;
  if (!isConfigText(value)) {
    throw new ConfigError(
      `EDGEPIPE_CONFIG must hold the JSON config itself on Workers (there are no files to read), got '${value}' ` +
        '(npm run dev:worker passes the contents of a local file)',
    );
  }
  return configObjectOf(value, 'EDGEPIPE_CONFIG');
}

/** Configs already parsed, per bindings object (an isolate hands every request the same one). */
const parsed = new WeakMap<Env, Config>();

/**
 * The same sources and precedence as `loadConfig` on the other runtimes, minus the files and flags. Parsed
 * once per isolate: validating the schema on every request and in every new pipe object cost more than the
 * rest of a small transfer's set-up (issue 16).
 */
export function configOf(env: Env): Config {
  let config = parsed.get(env);
  if (!config) {
    const { EDGEPIPE_CONFIG: _config, PIPES: _pipes, WATCH: _watch, ...strings } = env;
    config = configFromSources(configObject(env.EDGEPIPE_CONFIG), strings);
    parsed.set(env, config);
  }
  return config;
}

/** Where this deployment's pipes meet (`broker.workers`): Redis when one is given, unless told otherwise. */
export function pipesBackend(config: Config): 'durable-object' | 'redis' {
  return config.broker.workers ?? (config.broker.redis || config.broker.cluster ? 'redis' : 'durable-object');
}
