import { authFromEnv, listOf } from './access/auth-from-env.js';
import { type Config, ConfigError, parseConfig } from './config.js';

/**
 * How every runtime builds its Config from the same sources, so `EDGEPIPE_CONFIG` means one thing on all of
 * them: the JSON config, given as its text or (where there is a file system) as a file's path; then the
 * environment (HOST, PORT, REDIS_URL, EDGEPIPE_SECRETS, EDGEPIPE_ADMIN_TOKEN); then flags. A later source
 * beats an earlier one; an empty value counts as not given. Reading files is the CLI's (`loadConfig`).
 */

/** Settings given on the command line; undefined (or empty) means "not given". */
export interface ConfigFlags {
  readonly host?: string | undefined;
  readonly port?: string | undefined;
  /** The JSON config: a file's path, or the JSON text itself. */
  readonly config?: string | undefined;
  readonly redis?: string | undefined;
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  /** Serve cleartext HTTP/2 with prior knowledge. */
  readonly h2c?: boolean | undefined;
  /** Comma-separated addresses or CIDR ranges of trusted proxies. */
  readonly trustProxy?: string | undefined;
}

type Json = Record<string, unknown>;

/**
 * Whether a `--config`/`EDGEPIPE_CONFIG` value is the JSON text itself (it starts with `{`) rather than the
 * path of a file holding it.
 */
export function isConfigText(value: string): boolean {
  return value.trimStart().startsWith('{');
}

/**
 * The object of a JSON config text; `source` names it in errors (`config file /etc/edgepipe.json`).
 * @throws ConfigError when the text is not JSON or not an object.
 */
export function configObjectOf(text: string, source: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`${source} must hold a JSON object`);
  }
  return parsed as Json;
}

function parsePort(value: string, source: string): number {
  if (!/^[0-9]{1,5}$/.test(value))
    throw new ConfigError(`server.port: ${source} must be a port number, got '${value}'`);
  return Number(value);
}

const given = (value: string | undefined): value is string => value !== undefined && value !== '';

/**
 * The one Config from the config object `base`, the environment and the flags (see above).
 * @throws ConfigError naming the bad key.
 */
export function configFromSources(
  base: Json,
  env: Record<string, string | undefined>,
  flags: ConfigFlags = {},
): Config {
  const server: Json = { ...((base.server as Json | undefined) ?? {}) };
  if (given(env.HOST)) server.host = env.HOST;
  if (given(env.PORT)) server.port = parsePort(env.PORT, 'PORT');
  if (given(flags.host)) server.host = flags.host;
  if (given(flags.port)) server.port = parsePort(flags.port, '--port');
  if (given(flags.tlsCert) || given(flags.tlsKey)) {
    if (!given(flags.tlsCert) || !given(flags.tlsKey)) {
      throw new ConfigError('server.tls: give both --tls-cert and --tls-key');
    }
    server.tls = { cert: flags.tlsCert, key: flags.tlsKey };
  }
  if (flags.h2c !== undefined) server.h2c = flags.h2c;
  if (given(flags.trustProxy)) server.trustProxies = listOf(flags.trustProxy);
  const broker: Json = { ...((base.broker as Json | undefined) ?? {}) };
  if (given(env.REDIS_URL)) broker.redis = env.REDIS_URL;
  if (given(flags.redis)) broker.redis = flags.redis;
  return parseConfig({ ...base, server, broker, auth: authFromEnv(base, env) });
}
