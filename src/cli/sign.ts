import ms from 'ms';
import { type CapabilityScope, SigningKeys, signedQuery } from '../access/capability-url.js';
import { ConfigError } from '../config.js';
import { dotSegmentIn } from '../routes/dot-segments.js';
import { pipePathOf } from '../routes/pipe-target.js';
import { loadConfig } from './load-config.js';

/** `edgepipe sign` flags as commander gives them. */
export interface SignFlags {
  readonly send?: boolean;
  readonly recv?: boolean;
  readonly n?: string;
  readonly ttl: string;
  readonly prefix?: boolean;
  /** `--send --recv --prefix`: one URL for every pipe of a tunnel's namespace. */
  readonly tunnel?: boolean;
  readonly url: string;
  readonly config?: string;
}

/**
 * `--ttl` in milliseconds: a bare number is seconds (`3600`), as in `auth.maxTtlSeconds` and the URL's `exp`;
 * anything else is a duration `ms` reads (`90s`, `30m`, `1h`, `7d`). At least one second.
 * @throws ConfigError for anything else.
 */
export function ttlMsOf(ttl: string): number {
  const trimmed = ttl.trim();
  const parsed = /^[0-9]+$/.test(trimmed) ? Number(trimmed) * 1000 : ms(trimmed as ms.StringValue);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 1000) {
    throw new ConfigError(
      `--ttl: expected seconds (3600) or a duration such as 90s, 30m, 1h or 7d, got '${ttl}'`,
    );
  }
  return parsed;
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
  // --tunnel only adds to the others: `--tunnel --send` is the same URL as `--tunnel`.
  const send = Boolean(flags.send || flags.tunnel);
  const recv = Boolean(flags.recv || flags.tunnel);
  if (!send && !recv) throw new ConfigError('give --send, --recv, both of them, or --tunnel');
  const scope: CapabilityScope = send && recv ? 'both' : send ? 'send' : 'recv';
  if (flags.tunnel && flags.n !== undefined) {
    // A tunnel's pipes each have one sender and one receiver; n would bind every one of them.
    throw new ConfigError("--n: not with --tunnel (a tunnel's pipes have one receiver each)");
  }
  const ttlMs = ttlMsOf(flags.ttl);
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
  // The server refuses a target with dot segments (it would name another path), so no URL is signed for one.
  const dotSegment = dotSegmentIn(path);
  if (dotSegment) throw new ConfigError(`path: '${dotSegment}' segments are not allowed in a pipe path`);
  // The path as the server will see it: percent-encoded.
  const url = new URL(path.startsWith('/') ? path : `/${path}`, base);
  const pipePath = pipePathOf(url);
  const query = await signedQuery(new SigningKeys(config.auth.secrets), {
    scope,
    path: pipePath,
    prefix: Boolean(flags.prefix || flags.tunnel),
    n,
    expiresAt: Math.floor(nowMs / 1000) + ttlSeconds,
  });
  url.pathname = pipePath;
  url.search = query.toString();
  return url.toString();
}
