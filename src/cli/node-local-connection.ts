import { connect, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Dialer, LocalConnection } from '../client/tunnel/local-connection.js';
import { chunkStreamOf } from './chunk-stream-of.js';
import { describeAddress, type SocketAddress } from './socket-address.js';

/** How long dialling the service may take before it counts as unreachable. */
const DIAL_TIMEOUT_MS = 10_000;

/** Writes and resolves once the writable takes more (its buffer below its mark), rejects once it is gone. */
function writeTo(output: Writable, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (output.destroyed || output.writableEnded) {
      reject(new Error('the local side is closed'));
      return;
    }
    if (output.write(chunk)) {
      resolve();
      return;
    }
    const done = (error?: Error) => {
      output.off('drain', onDrain);
      output.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('the local side closed'));
    output.once('drain', onDrain);
    output.once('close', onClose);
  });
}

/** A TCP or Unix socket as a tunnel's local side; a reset is a real TCP RST where the socket has one. */
export function socketConnection(socket: Socket): LocalConnection {
  socket.setNoDelay(true);
  // Errors are read through the stream; later ones (a write after a reset) must not crash the process.
  socket.on('error', () => {});
  let corked = false;
  return {
    readable: chunkStreamOf(socket),
    write: (chunk) => {
      // The records of one piece of the pipe arrive in one tick: corked, they leave in one writev instead
      // of a syscall each (which was the exposing side's largest cost in a bulk transfer).
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(() => {
          corked = false;
          socket.uncork();
        });
      }
      return writeTo(socket, chunk);
    },
    end: () => socket.end(),
    reset: () => {
      if (socket.destroyed) return;
      // resetAndDestroy sends RST on TCP; a Unix socket has none and is closed instead.
      if (socket.remoteAddress !== undefined) socket.resetAndDestroy();
      else socket.destroy();
    },
  };
}

/** Dials `address` (half-open allowed: TCP half-close is carried end to end). */
export function socketDialer(address: SocketAddress): Dialer {
  return () =>
    new Promise<LocalConnection>((resolve, reject) => {
      const socket =
        address.kind === 'tcp'
          ? connect({ host: address.host, port: address.port, allowHalfOpen: true })
          : connect({ path: address.path, allowHalfOpen: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`${describeAddress(address)} did not answer within ${DIAL_TIMEOUT_MS / 1000} s`));
      }, DIAL_TIMEOUT_MS);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(socketConnection(socket));
      });
      const onError = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once('error', onError);
    });
}

/**
 * stdin and stdout as one connection (`connect --stdio`, ssh's ProxyCommand). A reset cannot be sent on a
 * pipe: stdout is closed and `onReset` decides the exit.
 */
export function stdioConnection(
  stdin: Readable,
  stdout: Writable,
  onReset: (reason: string) => void,
): LocalConnection {
  return {
    readable: chunkStreamOf(stdin),
    write: (chunk) => writeTo(stdout, chunk),
    end: () => stdout.end(),
    reset: (reason) => {
      stdin.destroy();
      stdout.end();
      onReset(reason);
    },
  };
}
