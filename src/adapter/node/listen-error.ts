/** A listening socket that could not be opened. */
export class ListenError extends Error {
  readonly code = 'LISTEN_FAILED';
  override name = 'ListenError';
}

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another server, or an earlier edgepipe still running?)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not one of this host',
  ENOTFOUND: 'no such host',
};

/**
 * The error of a failed `listen` as a ListenError naming the address and the reason, e.g.
 * `cannot listen on 127.0.0.1:8080: the port is in use (EADDRINUSE)`.
 */
export function listenError(error: unknown, host: string, port: number): ListenError {
  const code = (error as { code?: unknown } | null)?.code;
  const known = typeof code === 'string' ? LISTEN_REASONS[code] : undefined;
  const reason = known
    ? `${known} (${code as string})`
    : error instanceof Error
      ? error.message
      : String(error);
  const at = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return new ListenError(`cannot listen on ${at}: ${reason}`, { cause: error });
}
