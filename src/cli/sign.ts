import ms from 'ms';
import type { Scope } from '../access/access-config.js';
import { SigningKeys, signedQuery } from '../access/capability-url.js';
import { ConfigError } from '../config.js';
import { pipePathOf } from '../routes/pipe-target.js';
import { loadConfig } from './load-config.js';

/** `edgepipe sign` flags as commander gives them. */
export interface SignFlags {
  readonly send?: boolean;
  readonly recv?: boolean;
  readonly n?: string;
  readonly ttl: string;
  readonly prefix?: boolean;
  readonly url: string;
  readonly config?: string;
}

/**
 * The capability URL for `path`, signed with the first configured secret (config file or EDGEPIPE_SECRETS).
 * @throws ConfigError for a bad flag (the CLI prints it and exits 2).
 */
export async function signedUrl(
  path: string,
  flags: SignFlags,
  env: NodeJS.ProcessEnv,
  nowMs = Date.now(),
): Promise<string> {
  if (Boolean(flags.send) === Boolean(flags.recv))
    throw new ConfigError('give exactly one of --send and --recv');
  const scope: Scope = flags.send ? 'send' : 'recv';
  const ttlMs = ms(flags.ttl as ms.StringValue);
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 1000) {
    throw new ConfigError(`--ttl: expected a duration such as 90s, 30m, 1h or 7d, got '${flags.ttl}'`);
  }
  let n: number | undefined;
  if (flags.n !== undefined) {
    if (!/^[0-9]{1,7}$/.test(flags.n) || Number(flags.n) < 1) {
      throw new ConfigError(`--n: expected a whole number of receivers, got '${flags.n}'`);
    }
    n = Number(flags.n);
  }
  let base: URL;
  try {
    base = new URL(flags.url);
  } catch {
    throw new ConfigError(
      `--url: expected the broker's public URL such as https://pipe.example.com, got '${flags.url}'`,
    );
  }
  const config = loadConfig({ config: flags.config }, env);
  if (config.auth.secrets.length === 0) {
    throw new ConfigError('no signing secret: set EDGEPIPE_SECRETS or auth.secrets in the config file');
  }
  const ttlSeconds = Math.ceil(ttlMs / 1000);
  if (ttlSeconds > config.auth.maxTtlSeconds) {
    throw new ConfigError(
      `--ttl: at most ${config.auth.maxTtlSeconds} s (auth.maxTtlSeconds), got ${ttlSeconds} s`,
    );
  }
  // The path as the server will see it: percent-encoded and normalised by the URL parser.
  const url = new URL(path.startsWith('/') ? path : `/${path}`, base);
  const pipePath = pipePathOf(url);
  const query = await signedQuery(new SigningKeys(config.auth.secrets), {
    scope,
    path: pipePath,
    prefix: Boolean(flags.prefix),
    n,
    expiresAt: Math.floor(nowMs / 1000) + ttlSeconds,
  });
  url.pathname = pipePath;
  url.search = query.toString();
  return url.toString();
}
