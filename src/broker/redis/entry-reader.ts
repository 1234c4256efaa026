import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import type { Cluster, Redis } from 'ioredis';
import { entryField } from './framing.js';
import { BulkString, RespError, RespReader, type RespValue } from './resp-reader.js';

/** A stream entry as a receiver reads it: its id, its frame header and its payload as received. */
export interface StreamEntry {
  readonly id: string;
  readonly header: Buffer;
  /** The `p` field as the socket reads it spans: handed to the client as it is, never joined. */
  readonly payload: readonly Uint8Array[];
}

/** Reads up to `count` entries of a stream from `start` (an id, `(id` or `-`) on. */
export type ReadEntries = (key: string, start: string, count: number) => Promise<StreamEntry[]>;

/** The same read through ioredis (a Cluster, or a runtime without sockets of its own): payloads copied once. */
export function readThrough(redis: Redis | Cluster): ReadEntries {
  return async (key, start, count) =>
    (await redis.xrangeBuffer(key, start, '+', 'COUNT', count)).map(([id, fields]) => ({
      id: id.toString(),
      header: entryField(fields, 'h'),
      payload: [entryField(fields, 'p')],
    }));
}

/** How long a connection may take to come up (ioredis's default `connectTimeout`). */
const CONNECT_TIMEOUT_MS = 10_000;

/** Replies awaited on one connection at most: receivers beyond it get a clear error, not a growing queue. */
const MAX_PENDING = 10_000;

interface Pending {
  resolve(value: RespValue): void;
  reject(error: Error): void;
}

/**
 * Receivers' `XRANGE` on a connection of its own (one per instance, opened at the first read), parsed by
 * `RespReader` so that payloads reach the clients as the Redis socket delivered them: ioredis would copy
 * each one into its parser's pool first (docs/benchmarks.md). A single Redis only (`redis://` or
 * `rediss://`, with the URL's user, password and database); a Cluster reads through ioredis.
 *
 * It does not retry: a command fails with the connection (a receiver's fetch fails as it would through
 * ioredis during an outage), and the next command connects again.
 */
export class EntryReader {
  private socket: Socket | undefined;
  private readonly pending: Pending[] = [];
  private closed = false;

  constructor(private readonly url: string) {}

  /** Up to `count` entries of `key` from `start` (an id, `(id` or `-`) on. */
  async xrange(key: string, start: string, count: number): Promise<StreamEntry[]> {
    const reply = await this.command(['XRANGE', key, start, '+', 'COUNT', String(count)]);
    if (!Array.isArray(reply)) throw new RespError('XRANGE: unexpected reply');
    return reply.map(entryOf);
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
  }

  private command(args: string[]): Promise<RespValue> {
    if (this.closed) return Promise.reject(new Error('The entry reader is closed.'));
    if (this.pending.length >= MAX_PENDING) return Promise.reject(new Error('Too many reads in flight.'));
    const socket = this.socket ?? this.open();
    return new Promise<RespValue>((resolve, reject) => {
      this.pending.push({
        resolve: (value) => (value instanceof RespError ? reject(value) : resolve(value)),
        reject,
      });
      socket.write(encode(args));
    });
  }

  private open(): Socket {
    const url = new URL(this.url);
    const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    const port = Number(url.port || 6379);
    const socket =
      url.protocol === 'rediss:' ? connectTls({ host, port, servername: host }) : connectTcp({ host, port });
    socket.setNoDelay(true);
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy(new Error('connect ETIMEDOUT')));
    socket.once(url.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => socket.setTimeout(0));
    const reader = new RespReader((value) => this.pending.shift()?.resolve(value));
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.feed(chunk);
      } catch (error) {
        socket.destroy(error as Error);
      }
    });
    let cause: Error | undefined;
    socket.on('error', (error) => {
      cause ??= error;
    });
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      const error = new Error(`lost the Redis connection for reads: ${cause?.message ?? 'closed'}`, {
        cause,
      });
      for (const waiter of this.pending.splice(0)) waiter.reject(error);
    });
    this.socket = socket;
    // Sent ahead of any command (pipelined): their replies come first, and an error one fails the command.
    const password = decodeURIComponent(url.password);
    const user = decodeURIComponent(url.username);
    const setup: string[][] = [];
    if (password) setup.push(user ? ['AUTH', user, password] : ['AUTH', password]);
    const db = Number(url.pathname.slice(1) || 0);
    if (db) setup.push(['SELECT', String(db)]);
    for (const args of setup) {
      this.pending.push({
        resolve: (value) => {
          if (!(value instanceof RespError)) return;
          // The commands queued behind it fail with its reason (they would only say NOAUTH).
          for (const waiter of this.pending.splice(0)) waiter.reject(value);
          socket.destroy(value);
        },
        reject: () => {},
      });
      socket.write(encode(args));
    }
    return socket;
  }
}

/** A command in RESP: an array of bulk strings. */
function encode(args: string[]): string {
  let out = `*${args.length}\r\n`;
  for (const arg of args) out += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
  return out;
}

function entryOf(value: RespValue): StreamEntry {
  const [id, fields] = Array.isArray(value) ? value : [];
  if (!(id instanceof BulkString) || !Array.isArray(fields)) throw new RespError('XRANGE: malformed entry');
  let header: Buffer = Buffer.alloc(0);
  let payload: Buffer[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const field = fields[i + 1];
    if (!(name instanceof BulkString) || !(field instanceof BulkString)) continue;
    const which = name.joined().toString();
    if (which === 'h') header = field.joined();
    else if (which === 'p') payload = field.pieces;
  }
  return { id: id.joined().toString(), header, payload };
}
