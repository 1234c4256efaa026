import type { Scope } from './access-config.js';

/**
 * What a capability URL lets its holder do: `send` (PUT/POST), `recv` (GET) or `both`. `both` is for a tunnel,
 * whose ends each send and receive on many pipes of one namespace (issue 13); one URL then covers a tunnel.
 * Bearer tokens list their scopes instead (`SCOPES`), so `both` is a URL's spelling only.
 */
export const CAPABILITY_SCOPES = ['send', 'recv', 'both'] as const;
export type CapabilityScope = (typeof CAPABILITY_SCOPES)[number];

/** Whether a capability of scope `granted` admits a request that asks to `wanted`. */
function scopeAdmits(granted: CapabilityScope, wanted: Scope): boolean {
  return granted === 'both' || granted === wanted;
}

function isCapabilityScope(text: string | null): text is CapabilityScope {
  return (CAPABILITY_SCOPES as readonly (string | null)[]).includes(text);
}

/**
 * Capability URLs: a pipe URL that carries what its holder may do, until when, signed with HMAC-SHA256 over
 * Web Crypto (so every runtime verifies it the same way). The query names are short for curl one-liners:
 * `scope`, `exp` (Unix seconds), `prefix` (a namespace: the URL may name any pipe at or below it), `sig`
 * (base64url).
 * A signed `n` is part of the signature: the holder cannot change how many receivers the pipe has.
 * With `prefix`, a client names a pipe below the namespace by extending the URL's path and keeping its query
 * as it is (`/tunnel/ctl/0?scope=both&exp=...&prefix=%2Ftunnel&sig=...`).
 */
export interface Capability {
  readonly scope: CapabilityScope;
  /** The pipe path, or with `prefix` the namespace. Percent-encoded, as in the URL. */
  readonly path: string;
  readonly prefix: boolean;
  /** The `?n=` the URL is bound to, if any. */
  readonly n?: number | undefined;
  /** Expiry, Unix seconds. */
  readonly expiresAt: number;
}

/** Query parameters of a capability; the pipe protocol's own (`n`, `offset`) pass through. */
export const CAPABILITY_PARAMS = ['scope', 'exp', 'prefix', 'sig'] as const;

const encoder = new TextEncoder();

/** The bytes signed: versioned so the format can change without old URLs meaning something new. */
function signedText(capability: Capability): string {
  return [
    'edgepipe-capability-v1',
    capability.scope,
    capability.path,
    capability.prefix ? 'prefix' : 'exact',
    capability.n === undefined ? '' : String(capability.n),
    String(capability.expiresAt),
  ].join('\n');
}

function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes base64url; `undefined` for anything else (a signature is never trusted to parse). */
function fromBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(text)) return undefined;
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** HMAC keys of the configured secrets, imported once (importing is async and not free). */
export class SigningKeys {
  private readonly keys: Promise<CryptoKey[]>;

  constructor(secrets: readonly string[]) {
    this.keys = Promise.all(
      secrets.map((secret) =>
        crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [
          'sign',
          'verify',
        ]),
      ),
    );
    // A rejected import surfaces on first use, not as an unhandled rejection at start-up.
    this.keys.catch(() => {});
  }

  /** Signs with the first secret. */
  async sign(capability: Capability): Promise<string> {
    const [first] = await this.keys;
    if (!first) throw new Error('no signing secret is configured');
    const signature = await crypto.subtle.sign('HMAC', first, encoder.encode(signedText(capability)));
    return base64url(new Uint8Array(signature));
  }

  /** Whether any configured secret made `signature`. `crypto.subtle.verify` compares in constant time. */
  async verify(capability: Capability, signature: string): Promise<boolean> {
    const bytes = fromBase64url(signature);
    if (!bytes) return false;
    const data = encoder.encode(signedText(capability));
    let valid = false;
    // Every key is tried, so the time taken does not tell which one matched.
    for (const key of await this.keys) {
      if (await crypto.subtle.verify('HMAC', key, bytes, data)) valid = true;
    }
    return valid;
  }
}

/** The query of a signed URL for `capability` (append to the pipe URL with `?` or `&`). */
export async function signedQuery(keys: SigningKeys, capability: Capability): Promise<URLSearchParams> {
  const query = new URLSearchParams();
  if (capability.n !== undefined) query.set('n', String(capability.n));
  query.set('scope', capability.scope);
  query.set('exp', String(capability.expiresAt));
  if (capability.prefix) query.set('prefix', capability.path);
  query.set('sig', await keys.sign(capability));
  return query;
}

/** Why a presented capability does not admit a request (answered 401/403 with this reason). */
export type CapabilityRefusal = { readonly status: 401 | 403; readonly reason: string };

/**
 * Checks the capability in `url` for a request of `scope` on `path` at `nowSeconds`. Returns `undefined`
 * when it admits the request, otherwise the refusal. The signature is checked before the scope and expiry
 * are reported, so a forger learns nothing from the reason.
 */
export async function checkCapability(
  keys: SigningKeys,
  url: URL,
  path: string,
  scope: Scope,
  nowSeconds: number,
  maxTtlSeconds: number,
): Promise<CapabilityRefusal | undefined> {
  const params = url.searchParams;
  const signature = params.get('sig');
  if (signature === null) {
    return { status: 401, reason: 'This server only serves signed URLs: the URL has no signature (sig).' };
  }
  for (const name of CAPABILITY_PARAMS) {
    if (params.getAll(name).length > 1) return { status: 403, reason: `${name} is given more than once.` };
  }
  if (params.getAll('n').length > 1) return { status: 403, reason: 'n is given more than once.' };
  const signedScope = params.get('scope');
  const expiry = params.get('exp') ?? '';
  const prefixFlag = params.get('prefix');
  if (!isCapabilityScope(signedScope)) {
    return { status: 403, reason: 'The signed URL has no valid scope (send, recv or both).' };
  }
  if (!/^[0-9]{1,12}$/.test(expiry)) return { status: 403, reason: 'The signed URL has no valid expiry.' };
  const rawN = params.get('n');
  const prefix = prefixFlag !== null;
  if (prefix && !isWithin(path, prefixFlag)) {
    return { status: 403, reason: `The signed URL admits pipes under ${prefixFlag.slice(0, 200)} only.` };
  }
  const signedPath = prefix ? prefixFlag : path;

  const expiresAt = Number(expiry);
  const candidates: Capability[] = [{ scope: signedScope, path: signedPath, prefix, expiresAt }];
  // A URL signed with `n` carries it in the query; one signed without may still ask for receivers.
  if (rawN !== null && /^[0-9]{1,7}$/.test(rawN)) candidates.unshift({ ...candidates[0]!, n: Number(rawN) });
  let valid = false;
  for (const candidate of candidates) {
    if (await keys.verify(candidate, signature)) valid = true;
  }
  if (!valid) return { status: 403, reason: 'The signature does not match this URL.' };
  if (!scopeAdmits(signedScope, scope)) {
    return {
      status: 403,
      reason: `This URL is signed for ${signedScope === 'send' ? 'sending' : 'receiving'} only.`,
    };
  }
  if (expiresAt <= nowSeconds) {
    return { status: 403, reason: `The signed URL expired ${nowSeconds - expiresAt} s ago.` };
  }
  if (expiresAt > nowSeconds + maxTtlSeconds) {
    return { status: 403, reason: 'The signed URL expires later than this server allows.' };
  }
  return undefined;
}

/** Whether pipe `path` is `namespace` itself or below it (segment-wise: `/team-a` does not hold `/team-ab`). */
export function isWithin(path: string, namespace: string): boolean {
  return namespace === '/' || path === namespace || path.startsWith(`${namespace}/`);
}
