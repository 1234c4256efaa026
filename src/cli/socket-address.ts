import { UsageError } from '../client/errors.js';

/** Where a tunnel dials or listens on this host: a TCP address, or a Unix socket (a named pipe on Windows). */
export type SocketAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'path'; readonly path: string };

/**
 * Reads `--to` / `--listen`: `host:port`, `[v6]:port`, a bare port (127.0.0.1), `unix:/path/to.sock`, or a
 * Windows named pipe (`\\.\pipe\name`, which Node's net module takes where Unix takes a socket path).
 * @throws UsageError for anything else.
 */
export function socketAddressOf(text: string, flag: string): SocketAddress {
  const value = text.trim();
  if (value.startsWith('unix:')) {
    const path = value.slice('unix:'.length);
    if (!path) throw new UsageError(`${flag}: unix: needs a socket path, as in unix:/run/app.sock`);
    return { kind: 'path', path };
  }
  if (/^\\\\[.?]\\pipe\\./i.test(value)) return { kind: 'path', path: value };
  if (/^\d+$/.test(value)) return { kind: 'tcp', host: '127.0.0.1', port: portOf(value, flag, text) };
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d+)$/.exec(value);
  if (!match) {
    throw new UsageError(
      `${flag}: expected host:port, [v6]:port, a port, unix:/path or \\\\.\\pipe\\name, not '${text}'`,
    );
  }
  return { kind: 'tcp', host: match[1] ?? match[2]!, port: portOf(match[3]!, flag, text) };
}

function portOf(digits: string, flag: string, text: string): number {
  const port = Number(digits);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new UsageError(`${flag}: the port must be 1 to 65535, not '${text}'`);
  }
  return port;
}

/** The address as a user reads it. */
export function describeAddress(address: SocketAddress): string {
  if (address.kind === 'path') return address.path;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
