type Json = Record<string, unknown>;

/** `a, b,c` as a list, empty entries dropped. */
export function listOf(value: string): string[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
}

/**
 * The secrets in the environment rather than the config file (which may be checked in): EDGEPIPE_SECRETS
 * (comma-separated signing secrets, the first signs) and EDGEPIPE_ADMIN_TOKEN. Shared with the Workers entry,
 * where they are `wrangler secret`s.
 */
export function authFromEnv(base: Json, env: Record<string, string | undefined>): Json {
  const auth: Json = { ...((base.auth as Json | undefined) ?? {}) };
  if (env.EDGEPIPE_SECRETS) auth.secrets = listOf(env.EDGEPIPE_SECRETS);
  if (env.EDGEPIPE_ADMIN_TOKEN) auth.adminToken = env.EDGEPIPE_ADMIN_TOKEN;
  return auth;
}
