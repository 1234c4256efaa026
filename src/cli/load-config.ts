import { readFileSync } from 'node:fs';
import { authFromEnv, listOf } from '../access/auth-from-env.js';
import { type Config, ConfigError, parseConfig } from '../config.js';

/** Settings given on the command line; undefined means "not given". */
export interface ConfigFlags {
  readonly host?: string | undefined;
  readonly port?: string | undefined;
  readonly config?: string | undefined;
  readonly redis?: string | undefined;
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  /** Comma-separated addresses or CIDR ranges of trusted proxies. */
  readonly trustProxy?: string | undefined;
}

type Json = Record<string, unknown>;

function readConfigFile(file: string): Json {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    }
    return parsed as Json;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`config file ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

function parsePort(value: string, source: string): number {
  if (!/^[0-9]{1,5}$/.test(value))
    throw new ConfigError(`server.port: ${source} must be a port number, got '${value}'`);
  return Number(value);
}

/**
 * Builds the one Config: the JSON file (`--config` or EDGEPIPE_CONFIG), then the environment (HOST, PORT,
 * REDIS_URL, EDGEPIPE_SECRETS, EDGEPIPE_ADMIN_TOKEN), then flags; a later source beats an earlier one.
 * Validation names the bad key.
 */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv): Config {
  const file = flags.config ?? env.EDGEPIPE_CONFIG;
  const base: Json = file ? readConfigFile(file) : {};
  const server: Json = { ...((base.server as Json | undefined) ?? {}) };
  if (env.HOST) server.host = env.HOST;
  if (env.PORT) server.port = parsePort(env.PORT, 'PORT');
  if (flags.host !== undefined) server.host = flags.host;
  if (flags.port !== undefined) server.port = parsePort(flags.port, '--port');
  if (flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
    if (flags.tlsCert === undefined || flags.tlsKey === undefined) {
      throw new ConfigError('server.tls: give both --tls-cert and --tls-key');
    }
    server.tls = { cert: flags.tlsCert, key: flags.tlsKey };
  }
  if (flags.trustProxy !== undefined) server.trustProxies = listOf(flags.trustProxy);
  const broker: Json = { ...((base.broker as Json | undefined) ?? {}) };
  if (env.REDIS_URL) broker.redis = env.REDIS_URL;
  if (flags.redis !== undefined) broker.redis = flags.redis;
  return parseConfig({ ...base, server, broker, auth: authFromEnv(base, env) });
}
