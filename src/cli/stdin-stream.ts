import { createReadStream, fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';

/** How much of stdin Node may buffer before it stops reading: what a pull then takes at once. */
const STDIN_BUFFER_BYTES = 1024 * 1024;

/**
 * Standard input read with a 1 MiB buffer. `process.stdin` stops reading at 16 KiB and hands over 64 KiB
 * pieces; with the larger buffer, what piles up while the transfer is busy is handed on joined (see
 * `webStreamOf`), which costs far less CPU per GiB. A pipe or socket is read as a socket, a regular file
 * as a file, a terminal as `process.stdin`.
 */
export function stdinReadable(): Readable {
  const stat = fstatSync(0);
  if (stat.isFIFO() || stat.isSocket()) {
    // `readableHighWaterMark` reaches the Duplex underneath; Node's socket options type omits it.
    const options = { fd: 0, readable: true, writable: false, readableHighWaterMark: STDIN_BUFFER_BYTES };
    return new Socket(options as ConstructorParameters<typeof Socket>[0]);
  }
  if (stat.isFile()) return createReadStream('', { fd: 0, highWaterMark: STDIN_BUFFER_BYTES });
  return process.stdin;
}
