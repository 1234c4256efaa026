import { controlUrl } from '../../protocol/tunnel-layout.js';
import { type PipeProbe, probeWithRetries } from '../pipe-probe.js';
import { Backoff } from '../retry-policy.js';
import type { TunnelTransport } from './tunnel-connection.js';

/**
 * Asks the server once, with `HEAD` on the first control slot, what every pipe of the tunnel would be told
 * (an edgepipe server? one that resumes?), retried like any request. A refused credential is final.
 * @throws RefusedError, GaveUpError
 */
export async function probeTunnel(
  namespace: URL,
  transport: TunnelTransport,
  signal?: AbortSignal,
): Promise<PipeProbe> {
  const backoff = new Backoff(transport.retry, () => transport.clock.now(), transport.random);
  const probe = await probeWithRetries(
    { ...transport, url: controlUrl(namespace, 0), ...(signal ? { signal } : {}) },
    backoff,
  );
  // The slot's own state does not matter: each pipe of a tunnel is new when first used.
  return { ...probe, state: 'idle', uploadOffset: undefined, senderDropped: undefined };
}
