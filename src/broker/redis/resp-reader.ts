/**
 * A RESP2 reply parser (https://redis.io/docs/latest/develop/reference/protocol-spec/) that never copies a
 * bulk string: it comes out as the list of views into the socket reads it spans. ioredis's parser copies
 * every bulk string that spans reads into a pool of its own, which for a receiver's `XRANGE` of 1 MiB
 * frames is every payload byte once more (docs/benchmarks.md, "Redis, sender on A and receiver on B").
 */

/** A bulk string, as the pieces of the socket reads it arrived in (none for an empty string). */
export class BulkString {
  constructor(readonly pieces: Buffer[]) {}

  /** Its bytes as one Buffer (a copy only when it spans reads): for short values such as ids. */
  joined(): Buffer {
    return this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces);
  }
}

/** A reply: simple string, integer, bulk string, null, array, or an error reply. */
export type RespValue = string | number | BulkString | null | RespValue[] | RespError;

/** An error reply (`-ERR ...`, `-WRONGPASS ...`): Redis refused the command. */
export class RespError extends Error {
  readonly code = 'REDIS_REPLY_ERROR';
  override name = 'RespError';
}

/**
 * The longest header line taken (`$262144`, `*16`, a simple string or an error message): a peer that sends
 * more without a line end is not a Redis, and the parser must not buffer it for ever.
 */
const MAX_LINE_CHARS = 64 * 1024;

/** A bulk string being read: the pieces so far, the bytes still to come, then its CRLF. */
interface Bulk {
  readonly pieces: Buffer[];
  need: number;
  crlf: number;
}

/** Feeds socket reads in, hands complete top-level replies out in order. */
export class RespReader {
  private line = '';
  private bulk: Bulk | undefined;
  /** Arrays being filled, innermost last, each with the number of elements still to come. */
  private readonly open: Array<{ items: RespValue[]; left: number }> = [];

  constructor(private readonly onReply: (value: RespValue) => void) {}

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const bulk = this.bulk;
      if (bulk) {
        if (bulk.need > 0) {
          const take = Math.min(bulk.need, chunk.length - at);
          bulk.pieces.push(chunk.subarray(at, at + take));
          bulk.need -= take;
          at += take;
          continue;
        }
        const skip = Math.min(bulk.crlf, chunk.length - at);
        bulk.crlf -= skip;
        at += skip;
        if (bulk.crlf === 0) {
          this.bulk = undefined;
          this.complete(new BulkString(bulk.pieces));
        }
        continue;
      }
      const end = chunk.indexOf(10, at);
      if (end === -1) {
        this.line += chunk.toString('latin1', at);
        if (this.line.length > MAX_LINE_CHARS) throw new RespError('reply line too long');
        return;
      }
      const line = this.line + chunk.toString('latin1', at, end);
      this.line = '';
      at = end + 1;
      const done = this.header(line.endsWith('\r') ? line.slice(0, -1) : line);
      if (done) this.complete(done.value);
    }
  }

  /** Reads a header line: the value it completes, or undefined when it opens a bulk string or an array. */
  private header(line: string): { value: RespValue } | undefined {
    const rest = line.slice(1);
    switch (line[0]) {
      case '+':
        return { value: rest };
      case '-':
        return { value: new RespError(rest) };
      case ':':
        return { value: Number(rest) };
      case '$': {
        const length = Number(rest);
        if (length < 0) return { value: null };
        this.bulk = { pieces: [], need: length, crlf: 2 };
        return undefined;
      }
      case '*': {
        const count = Number(rest);
        if (count < 0) return { value: null };
        if (count === 0) return { value: [] };
        this.open.push({ items: [], left: count });
        return undefined;
      }
      default:
        throw new RespError(`unexpected reply type ${JSON.stringify(line.slice(0, 16))}`);
    }
  }

  private complete(value: RespValue): void {
    let done = value;
    for (;;) {
      const top = this.open[this.open.length - 1];
      if (!top) {
        this.onReply(done);
        return;
      }
      top.items.push(done);
      top.left -= 1;
      if (top.left > 0) return;
      this.open.pop();
      done = top.items;
    }
  }
}
