import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';

const PROC_FILES = ['/proc/net/tcp', '/proc/net/tcp6'] as const;

const hexPort = (port: number) => `:${port.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Bytes written to `socket` that its peer's kernel has not acknowledged yet (Linux's `tx_queue` in
 * /proc/net/tcp: sent but unacknowledged plus not yet sent). A reset (RST) discards them, so a proxy that
 * must deliver exactly N bytes before resetting waits for this to reach 0. On loopback the peer acknowledges
 * as soon as the bytes are in its receive buffer, whether or not its application has read them.
 *
 * Resolves 0 when the socket is not found (closed already, or not on Linux): callers then reset at once.
 * Sockets are matched by their local and remote ports, enough to tell connections apart on one machine.
 */
export async function tcpSendQueue(socket: Socket): Promise<number> {
  const { localPort, remotePort } = socket;
  if (localPort === undefined || remotePort === undefined) return 0;
  const local = hexPort(localPort);
  const remote = hexPort(remotePort);
  for (const file of PROC_FILES) {
    let table: string;
    try {
      table = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    // Columns: sl local_address rem_address st tx_queue:rx_queue ...
    for (const line of table.split('\n')) {
      const columns = line.trim().split(/\s+/);
      if (columns[1]?.endsWith(local) && columns[2]?.endsWith(remote)) {
        return Number.parseInt(columns[4]?.split(':')[0] ?? '0', 16);
      }
    }
  }
  return 0;
}
