import type { Clock } from '../clock.js';
import type { AuthConfig, Scope } from './access-config.js';
import { bearerOf, type TokenGrant, TokenTable } from './bearer-tokens.js';
import { checkCapability, isWithin, SigningKeys } from './capability-url.js';

/** Why a request is not let in: 401 (no credential) or 403 (a credential that does not admit it). */
export interface Refusal {
  readonly status: 401 | 403;
  readonly reason: string;
  /** Sent with a 401 so clients know what to present. */
  readonly challenge?: string;
}

/** What a pipe request asks to do: send (PUT/POST), receive (GET) or look (HEAD: either scope will do). */
export type PipeAccess = Scope | 'inspect';

/** The admin endpoints: `/_/selfheal` and `/_/metrics`. */
export type AdminEndpoint = 'selfheal' | 'metrics';

const BEARER_CHALLENGE = 'Bearer realm="edgepipe"';

/** Decides, from `auth` in the config, who may use which pipe and who may read the admin endpoints. */
export class AccessPolicy {
  private readonly keys: SigningKeys | undefined;
  private readonly tokens: TokenTable<TokenGrant> | undefined;
  private readonly admin: TokenTable<{ token: string }> | undefined;

  constructor(
    private readonly auth: AuthConfig,
    private readonly clock: Clock,
  ) {
    this.keys = auth.mode === 'signed' ? new SigningKeys(auth.secrets) : undefined;
    this.tokens = auth.mode === 'token' ? new TokenTable(auth.tokens) : undefined;
    this.admin = auth.adminToken ? new TokenTable([{ token: auth.adminToken }]) : undefined;
  }

  /** Whether everything is open (no check runs at all). */
  get open(): boolean {
    return this.auth.mode === 'open';
  }

  /** `undefined` when `request` may do `access` on pipe `path`, otherwise why not. */
  async checkPipe(
    request: Request,
    url: URL,
    path: string,
    access: PipeAccess,
  ): Promise<Refusal | undefined> {
    if (this.keys) {
      const nowSeconds = Math.floor(this.clock.now() / 1000);
      const check = (scope: Scope) =>
        checkCapability(this.keys!, url, path, scope, nowSeconds, this.auth.maxTtlSeconds);
      if (access !== 'inspect') return check(access);
      // Either capability may look at its pipe (a sender asks HEAD where to resume).
      const asSender = await check('send');
      return asSender && (await check('recv'));
    }
    if (this.tokens) {
      const presented = bearerOf(request);
      if (presented === undefined) {
        return {
          status: 401,
          reason: 'This server needs a token: send Authorization: Bearer <token>.',
          challenge: BEARER_CHALLENGE,
        };
      }
      const grant = await this.tokens.match(presented);
      if (!grant) return { status: 403, reason: 'The token is not valid here.' };
      if (!isWithin(path, grant.prefix)) {
        return { status: 403, reason: `The token of ${grant.name} admits pipes under ${grant.prefix} only.` };
      }
      if (access !== 'inspect' && !grant.scopes.includes(access)) {
        return {
          status: 403,
          reason: `The token of ${grant.name} may not ${access === 'send' ? 'send' : 'receive'}.`,
        };
      }
    }
    return undefined;
  }

  /**
   * `undefined` when `request` may read `endpoint`. With an admin token configured it is required (unless
   * metrics are public); without one, the endpoints stay open only while everything else is.
   */
  async checkAdmin(request: Request, endpoint: AdminEndpoint): Promise<Refusal | undefined> {
    if (endpoint === 'metrics' && this.auth.metricsPublic) return undefined;
    if (!this.admin) {
      if (this.open) return undefined;
      return {
        status: 403,
        reason: `/_/${endpoint} is closed: no admin token is configured (auth.adminToken).`,
      };
    }
    const presented = bearerOf(request);
    if (presented === undefined) {
      return {
        status: 401,
        reason: `/_/${endpoint} needs the admin token: send Authorization: Bearer <token>.`,
        challenge: BEARER_CHALLENGE,
      };
    }
    if (!(await this.admin.match(presented))) return { status: 403, reason: 'The admin token is wrong.' };
    return undefined;
  }
}
