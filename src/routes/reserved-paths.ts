/** Paths that belong to the server; nobody may send to them. Everything under `/_/` is reserved as well. */
export const RESERVED_PATHS = {
  index: '/',
  noscript: '/noscript',
  help: '/help',
  version: '/version',
  favicon: '/favicon.ico',
  robots: '/robots.txt',
} as const;

/** Prefix of edgepipe's own endpoints (`/_/health`, later metrics and admin). */
export const INTERNAL_PREFIX = '/_/';

const reserved: ReadonlySet<string> = new Set(Object.values(RESERVED_PATHS));

export function isReservedPath(path: string): boolean {
  return reserved.has(path) || path === '/_' || path.startsWith(INTERNAL_PREFIX);
}
