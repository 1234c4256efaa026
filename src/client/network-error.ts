import { StallError } from './transfer-events.js';

/**
 * A network error in a few words: the socket's own code (ECONNRESET, ECONNREFUSED, ...) where one is found
 * along the chain of causes (fetch wraps the socket's error, undici wraps it again), else the innermost
 * message.
 */
export function describe(error: unknown): string {
  if (error instanceof StallError) return error.message;
  let innermost = error;
  for (let at: unknown = error; at && typeof at === 'object'; at = (at as { cause?: unknown }).cause) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
    innermost = at;
  }
  return innermost instanceof Error ? innermost.message : String(innermost);
}
