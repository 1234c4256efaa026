import { readFileSync } from 'node:fs';
import type { Config } from '../config.js';
import { ConfigError } from '../config.js';
import { type ConfigFlags, configFromSources, configObjectOf, isConfigText } from '../config-sources.js';

export type { ConfigFlags } from '../config-sources.js';

type Json = Record<string, unknown>;

/**
 * The JSON config a `--config`/`EDGEPIPE_CONFIG` value gives: the text itself when it starts with `{`,
 * otherwise the contents of the file it names.
 * @throws ConfigError when the file cannot be read or does not hold a JSON object.
 */
export function readConfigValue(value: string): Json {
  if (isConfigText(value)) return configObjectOf(value, 'the config JSON (--config or EDGEPIPE_CONFIG)');
  let text: string;
  try {
    text = readFileSync(value, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${value}: ${(error as Error).message}`);
  }
  return configObjectOf(text, `config file ${value}`);
}

/**
 * Builds the one Config: the JSON config (`--config` or EDGEPIPE_CONFIG: a file, or the JSON text), then
 * the environment (HOST, PORT, REDIS_URL, EDGEPIPE_SECRETS, EDGEPIPE_ADMIN_TOKEN), then flags; a later
 * source beats an earlier one. Validation names the bad key.
 */
export function loadConfig(flags: ConfigFlags, env: Record<string, string | undefined>): Config {
  const value = flags.config || env.EDGEPIPE_CONFIG;
  return configFromSources(value ? readConfigValue(value) : {}, env, flags);
}
