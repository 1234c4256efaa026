import { fail } from './http-error.js';
import { isReservedPath } from './reserved-paths.js';

/** Where a request points: a pipe path and how many receivers it has. */
export interface PipeTarget {
  readonly path: string;
  readonly receivers: number;
}

export interface PipeTargetLimits {
  readonly maxPathBytes: number;
  readonly maxReceivers: number;
}

/**
 * The pipe path of a URL: its percent-encoded pathname (dot segments already resolved by the URL parser;
 * see dot-segments.ts for why targets that had any are refused) without a trailing slash, so `/a/` and `/a` are one pipe, as in piping-server.
 */
export function pipePathOf(url: URL): string {
  const path = url.pathname;
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/** Parses `?n=`: absent means 1; anything but a decimal integer in 1..max is refused. */
export function receiverCountOf(url: URL, maxReceivers: number): number {
  const values = url.searchParams.getAll('n');
  if (values.length === 0) return 1;
  if (values.length > 1) fail(400, 'n is given more than once.');
  const raw = values[0]!;
  if (!/^[0-9]{1,7}$/.test(raw))
    fail(400, `n should be a whole number from 1 to ${maxReceivers}, but n = '${raw.slice(0, 32)}'.`);
  const n = Number(raw);
  if (n < 1) fail(400, `n should > 0, but n = ${n}.`);
  if (n > maxReceivers) fail(400, `n should be at most ${maxReceivers}, but n = ${n}.`);
  return n;
}

/**
 * Refuses names that mean something else to someone else: invalid percent-encoding, and control characters
 * (a CR/LF in a name ends up in logs and in proxies' heads). Dot segments are not seen here: the URL parser
 * has resolved them before, and the guard refuses them where the runtime tells the raw target
 * (see dot-segments.ts). `%2F` stays part of a name.
 */
function checkPathName(path: string): void {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    fail(400, 'The path is not valid percent-encoded UTF-8.');
  }
  for (let i = 0; i < decoded.length; i++) {
    const code = decoded.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) fail(400, 'The path holds control characters.');
  }
}

/** Validates the path and `n` of a pipe request, answering 4xx with a one-line reason. */
export function pipeTargetOf(url: URL, limits: PipeTargetLimits): PipeTarget {
  const path = pipePathOf(url);
  if (path.length > limits.maxPathBytes) {
    fail(414, `The path is ${path.length} bytes long; at most ${limits.maxPathBytes} are allowed.`);
  }
  checkPathName(path);
  return { path, receivers: receiverCountOf(url, limits.maxReceivers) };
}

/** Like `pipeTargetOf`, for a sender: reserved paths belong to the server. */
export function senderTargetOf(url: URL, limits: PipeTargetLimits): PipeTarget {
  const target = pipeTargetOf(url, limits);
  if (isReservedPath(target.path)) {
    fail(400, `Cannot send to the reserved path '${target.path}'. (e.g. '/mypath123')`);
  }
  return target;
}
