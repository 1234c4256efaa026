import type { Scope } from './access-config.js';

const encoder = new TextEncoder();

/** SHA-256 of a token: compared instead of the token, so neither length nor content leaks through timing. */
async function digestOf(token: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(token)));
}

/** Equal 32-byte digests, in time that does not depend on where they differ. */
function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  let difference = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ (b[i] ?? 0);
  return difference === 0;
}

/** The token of an `Authorization: Bearer <token>` header; `undefined` when there is none. */
export function bearerOf(request: Request): string | undefined {
  const header = request.headers.get('authorization');
  const match = header?.match(/^Bearer[ \t]+([\x21-\x7e]{1,4096})[ \t]*$/i);
  return match?.[1];
}

/** A configured token as the access check needs it. */
export interface TokenGrant {
  readonly name: string;
  readonly token: string;
  readonly scopes: readonly Scope[];
  readonly prefix: string;
}

/**
 * The configured tokens, held as digests. `match` compares a presented token with every one of them (no
 * early exit), so the time taken does not tell how many there are before the right one.
 */
export class TokenTable<Grant extends { readonly token: string }> {
  private readonly entries: Promise<Array<{ digest: Uint8Array; grant: Grant }>>;

  constructor(grants: readonly Grant[]) {
    this.entries = Promise.all(grants.map(async (grant) => ({ digest: await digestOf(grant.token), grant })));
  }

  async match(presented: string): Promise<Grant | undefined> {
    const digest = await digestOf(presented);
    let found: Grant | undefined;
    for (const entry of await this.entries) {
      if (sameDigest(entry.digest, digest)) found = entry.grant;
    }
    return found;
  }
}
