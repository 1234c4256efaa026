// A refused request whose body the app left unread (a 409 to a second sender, a 503 to a topic without
// Redis) is read to its end, within bounds, before its answer goes. workerd resets the connection when a
// response leaves a request body unread, so a client still sending saw ECONNRESET instead of the answer;
// behind wrangler dev's proxy the proxy saw the reset and answered its own 503 "Your worker restarted
// mid-request" (for one PUT in two to a busy path at 200 kB, one POST in a hundred with two bytes). Node's
// server reads such a body too. Only refusals are drained: a sender that came first is answered at once
// (its transcript) and its body read later, by the transfer.

/** The most of a refused body read before its answer goes; past it the body is cancelled. */
export const DRAIN_MAX_BYTES = 8 * 1024 * 1024;
/** How long an answer waits for a refused body to end; then the body is cancelled. */
export const DRAIN_MAX_MS = 2000;

/**
 * `response`, once `request`'s body is read to its end when `response` refuses it (4xx, 5xx) and nothing
 * has taken it (neither used nor locked), stopping at `DRAIN_MAX_BYTES` or `DRAIN_MAX_MS`. Never throws.
 */
export async function drainRefusedBody(request: Request, response: Response): Promise<Response> {
  const body = request.body;
  if (response.status < 400 || !body || request.bodyUsed || body.locked) return response;
  const reader = body.getReader();
  // A sender that stops sending must not hold the answer: cancelling ends the pending read.
  const timer = setTimeout(() => void reader.cancel().catch(() => {}), DRAIN_MAX_MS);
  try {
    let read = 0;
    while (read <= DRAIN_MAX_BYTES) {
      const { done, value } = await reader.read();
      if (done) return response;
      read += value.byteLength;
    }
    await reader.cancel();
  } catch {
    // The client went away: nothing is left to read.
  } finally {
    clearTimeout(timer);
  }
  return response;
}
