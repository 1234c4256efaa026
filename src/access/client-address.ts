import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** Parses an address, folding IPv4-mapped IPv6 (`::ffff:1.2.3.4`) into IPv4 so one rule covers both. */
function parseAddress(text: string): Address | undefined {
  const trimmed = text.trim().replace(/^\[(.*)\]$/, '$1');
  if (!ipaddr.isValid(trimmed)) return undefined;
  return ipaddr.process(trimmed);
}

/** Peers seen lately, parsed: a client's requests come from one address, and parsing it is per request. */
const knownPeers = new Map<string, { address: Address; key: string } | null>();
/** Distinct peers kept; past it the table starts over (a scan of many addresses must not grow it). */
const MAX_KNOWN_PEERS = 4096;

function peerOf(text: string): { address: Address; key: string } | undefined {
  let known = knownPeers.get(text);
  if (known === undefined) {
    const address = parseAddress(text);
    known = address ? { address, key: address.toString() } : null;
    if (knownPeers.size >= MAX_KNOWN_PEERS) knownPeers.clear();
    knownPeers.set(text, known);
  }
  return known ?? undefined;
}

/** A list of networks (`10.0.0.0/8`, `::1`, `loopback`) whose requests may name their client. */
export class TrustedProxies {
  private readonly ranges: Array<[Address, number]>;

  /** @throws Error naming an entry that is neither an address, a CIDR range nor `loopback`. */
  constructor(entries: readonly string[]) {
    this.ranges = entries.flatMap((entry): Array<[Address, number]> => {
      if (entry === 'loopback') {
        return [ipaddr.parseCIDR('127.0.0.0/8'), ipaddr.parseCIDR('::1/128')] as Array<[Address, number]>;
      }
      if (entry.includes('/')) {
        const [address, bits] = ipaddr.parseCIDR(entry);
        return [[address.kind() === 'ipv6' ? ipaddr.process(address.toString()) : address, bits]];
      }
      const address = parseAddress(entry);
      if (!address) throw new Error(`not an IP address or CIDR range: ${entry}`);
      return [[address, address.kind() === 'ipv4' ? 32 : 128]];
    });
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  trusts(address: Address): boolean {
    return this.ranges.some(([range, bits]) => address.kind() === range.kind() && address.match(range, bits));
  }
}

/** Whether `entry` is something `TrustedProxies` accepts (for config validation). */
export function isProxyEntry(entry: string): boolean {
  if (entry === 'loopback') return true;
  return entry.includes('/') ? ipaddr.isValidCIDR(entry) : ipaddr.isValid(entry);
}

/**
 * The client a request counts against. The socket's peer, unless that peer is a trusted proxy: then the
 * `X-Forwarded-For` list is read from its right end (the entry the nearest proxy appended), skipping further
 * trusted proxies, and the first untrusted address is the client. Anything left of it could be forged by the
 * client, so it is never read. Without a peer (a runtime that does not tell) the key is `unknown`.
 */
export function clientAddressOf(
  peer: string | undefined,
  forwardedFor: string | null,
  proxies: TrustedProxies,
): string {
  const known = peer === undefined ? undefined : peerOf(peer);
  if (!known) return peer ?? 'unknown';
  const direct = known.address;
  if (proxies.empty || !forwardedFor || !proxies.trusts(direct)) return known.key;
  let client = direct;
  const hops = forwardedFor.split(',').slice(-32).reverse();
  for (const hop of hops) {
    const address = parseAddress(hop);
    // A malformed hop ends the walk: the last trusted proxy's own peer is all that is known.
    if (!address) break;
    client = address;
    if (!proxies.trusts(address)) break;
  }
  return client.toString();
}
