import { Command } from 'ioredis';
import { asBuffer } from './framing.js';

/** What `toWritable` is handed: the connection's socket (a Node `net.Socket` or `tls.TLSSocket`). */
interface WritableSocket {
  write(chunk: Uint8Array | string): boolean;
  cork(): void;
  uncork(): void;
}

const CRLF = '\r\n';

/** What a resent frame writes instead: a command whose reply keeps the connection's replies in step. */
const PING = `*1${CRLF}$4${CRLF}PING${CRLF}`;

/**
 * A frame's append was on a connection that dropped before Redis answered it, and ioredis would send it again
 * on the new one. Its payload is gone by then (released once written), and the first copy may already be in
 * the stream: the append fails instead, and with it the transfer (a resumable sender picks up from the
 * committed offset).
 */
export class FrameResendError extends Error {
  readonly code = 'FRAME_RESEND';
  override name = 'FrameResendError';
}

/** Sockets corked until the next tick, so that the commands of one turn leave in one `writev`. */
const corked = new WeakSet<object>();

function corkForThisTick(socket: WritableSocket): void {
  if (corked.has(socket)) return;
  corked.add(socket);
  socket.cork();
  process.nextTick(() => {
    corked.delete(socket);
    socket.uncork();
  });
}

/**
 * `XADD key MAXLEN ~ <max> * h <header> p <payload>` where the payload is a list of pieces (a frame's chunks
 * as they came off the sender's socket). ioredis joins a command's arguments into one new Buffer, and the
 * pieces would first have to be joined into one payload: two copies of every uploaded byte, which, being
 * memory outside the JavaScript heap, drove most of the instance's full garbage collections (docs/benchmarks.md,
 * "Redis, sender on A and receiver on B"). Here the RESP framing is written as a string and each piece as it
 * is, onto a socket corked for the rest of the tick: Node hands the lot to one `writev`, no byte copied.
 * The reply is the entry id, as `redis.xadd` gives it.
 *
 * The command lets go of its pieces once they are written, not when Redis answers: held until the answer,
 * under load they outlived two young-generation collections, and their garbage set off most of the sender
 * instance's full collections (docs/benchmarks.md, "Frames let go once written"). So it cannot be written
 * twice: a resend after a reconnect fails it (`FrameResendError`).
 */
export class FrameXadd extends Command {
  constructor(
    key: string,
    maxLen: number,
    header: Uint8Array,
    private pieces: readonly Uint8Array[],
    private readonly payloadBytes: number,
  ) {
    // The arguments are kept for ioredis's key routing (a Cluster), its debug log and its errors; the payload
    // stands in as an empty field: toWritable below writes the real one.
    super('xadd', [key, 'MAXLEN', '~', maxLen, '*', 'h', asBuffer(header), 'p', ''], {
      replyEncoding: 'utf8',
    });
  }

  private written = false;

  override toWritable(socket: object): string | Buffer {
    if (this.written) {
      this.reject(new FrameResendError('The connection to Redis dropped before it took a frame.'));
      return PING;
    }
    this.written = true;
    const out = socket as Partial<WritableSocket>;
    const writable =
      typeof out.cork !== 'function' || typeof out.write !== 'function'
        ? this.joined()
        : this.writePieces(out as WritableSocket);
    this.pieces = [];
    return writable;
  }

  /** The whole command as one Buffer, for a socket that cannot be corked: one copy of the payload. */
  private joined(): Buffer {
    const args = this.args.slice(0, -1) as Array<string | Buffer>;
    const parts: Buffer[] = [Buffer.from(`*${args.length + 2}${CRLF}$4${CRLF}xadd${CRLF}`)];
    for (const arg of args) {
      const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
      parts.push(Buffer.from(`$${bytes.byteLength}${CRLF}`), bytes, Buffer.from(CRLF));
    }
    parts.push(Buffer.from(`$${this.payloadBytes}${CRLF}`));
    for (const piece of this.pieces) parts.push(asBuffer(piece));
    parts.push(Buffer.from(CRLF));
    return Buffer.concat(parts);
  }

  private writePieces(out: WritableSocket): string {
    const args = this.args as Array<string | Buffer>;
    corkForThisTick(out);
    // Everything before the payload: `*<n>\r\n$4\r\nxadd\r\n` and each argument as `$<len>\r\n<bytes>\r\n`.
    let head = `*${args.length + 1}${CRLF}$4${CRLF}xadd${CRLF}`;
    for (let i = 0; i < args.length - 1; i++) {
      const arg = args[i]!;
      if (typeof arg === 'string') head += `$${Buffer.byteLength(arg)}${CRLF}${arg}${CRLF}`;
      else {
        out.write(`${head}$${arg.byteLength}${CRLF}`);
        out.write(arg);
        head = CRLF;
      }
    }
    out.write(`${head}$${this.payloadBytes}${CRLF}`);
    for (const piece of this.pieces) out.write(piece);
    return CRLF;
  }
}
