/**
 * Where a tunnel's pipes live below its namespace `N` (the path `expose` and `connect` are given; a signed
 * `--tunnel` URL admits every pipe at or below it). docs/tunnel-protocol.md describes the protocol:
 *
 * - `N/ctl/<k>`, k in 0 … CONTROL_SLOTS-1: the control slots. `expose` keeps a GET waiting on each; a
 *   `connect` announces a new connection by sending one small message to a free one.
 * - `N/<id>/up`: the connecting side's bytes to the exposed service (connect sends, expose receives).
 * - `N/<id>/down`: the service's bytes back (expose sends, connect receives).
 */

/** Waiting control GETs the exposing side keeps: several, so concurrent connects rarely meet a busy one. */
export const CONTROL_SLOTS = 16;

/** A connection id: 128 random bits in hex, unguessable, so only its two ends know its pipes. */
export const CONNECTION_ID = /^[0-9a-f]{32}$/;

/** Which way a connection's pipe carries bytes. */
export type TunnelDirection = 'up' | 'down';

/** The namespace's path with `tail` appended (the namespace never ends in '/'). */
function below(namespace: URL, tail: string): URL {
  const url = new URL(namespace);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${tail}`;
  return url;
}

/** The URL of control slot `slot` (query, such as a signature, kept). */
export function controlUrl(namespace: URL, slot: number): URL {
  return below(namespace, `ctl/${slot}`);
}

/** The URL of connection `id`'s pipe in `direction` (query kept). */
export function connectionUrl(namespace: URL, id: string, direction: TunnelDirection): URL {
  return below(namespace, `${id}/${direction}`);
}
