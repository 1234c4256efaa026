import { CAPABILITY_PARAMS } from '../access/capability-url.js';

/** Where a transfer of the page goes: the pipe's URL and the request headers its credential needs. */
export interface PipeAddress {
  readonly url: URL;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** A signed URL's scope (`send`, `recv`, `both`); undefined for a plain path. */
  readonly scope: string | undefined;
}

/** Thrown for what the user typed: the message is shown as it is. */
export class AddressError extends Error {}

const SCOPE_PARAM = CAPABILITY_PARAMS[0];

/**
 * The pipe the user means: a full URL as it is (a signed URL, another server), or a path on this server,
 * resolved against the page's own address so a proxy's path prefix is kept. `n` applies to a path only: a
 * signed URL carries its own. A token becomes a bearer credential and never part of a URL.
 */
export function pipeAddress(
  input: string,
  base: string,
  options: { n?: number; token?: string } = {},
): PipeAddress {
  const text = input.trim();
  if (text === '') throw new AddressError('Enter a path (for example mysecret123) or a URL.');
  let url: URL;
  if (/^https?:\/\//i.test(text)) {
    url = new URL(text);
  } else {
    // A path may carry its query (`mypath?n=3`, as a shared link gives it).
    const queryAt = text.indexOf('?');
    const path = queryAt === -1 ? text : text.slice(0, queryAt);
    const segments = path.replace(/^\/+/, '').split('/');
    if (segments.some((segment) => segment === '.' || segment === '..')) {
      throw new AddressError('A path may not have . or .. segments.');
    }
    url = new URL(segments.map(encodeURIComponent).join('/'), base);
    if (queryAt !== -1) url.search = text.slice(queryAt);
    if (options.n !== undefined && options.n > 1) url.searchParams.set('n', String(options.n));
  }
  const headers: Array<readonly [string, string]> = [];
  if (options.token?.trim()) headers.push(['Authorization', `Bearer ${options.token.trim()}`]);
  return { url, headers, scope: url.searchParams.get(SCOPE_PARAM) ?? undefined };
}

/**
 * What the other side opens to receive: this page with the receive target in its fragment (never sent to a
 * server). A URL signed for sending only cannot be shared: the receiver needs one signed for receiving.
 */
export function receiveLink(address: PipeAddress, typed: string, page: string): string | undefined {
  if (address.scope === 'send') return undefined;
  // A path with its query: receivers of `?n=3` must ask for `?n=3` too.
  const target =
    address.scope === undefined
      ? `${typed.trim().replace(/^\/+/, '').split('?')[0]}${address.url.search}`
      : address.url.href;
  const link = new URL(page);
  link.hash = `recv=${encodeURIComponent(target)}`;
  return link.href;
}

/** The fragment's `recv=` or `send=` target, when the page was opened from a shared link. */
export function targetFromFragment(hash: string): { role: 'recv' | 'send'; target: string } | undefined {
  const match = /^#(recv|send)=(.*)$/.exec(hash);
  if (!match) return undefined;
  try {
    return { role: match[1] as 'recv' | 'send', target: decodeURIComponent(match[2]!) };
  } catch {
    return undefined;
  }
}
