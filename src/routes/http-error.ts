import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import {
  BrokerClosedError,
  BrokerUnavailableError,
  CapacityError,
  PipeBusyError,
  type PipeError,
  ReceiverCountMismatchError,
  SenderAbortedError,
} from '../broker/errors.js';

/**
 * Throws the one error type routes use. `headers` ride along (e.g. `Allow`, `Retry-After`) and are merged into
 * the `[ERROR] ...` response that `renderError` builds.
 */
export function fail(status: ContentfulStatusCode, message: string, headers?: Record<string, string>): never {
  throw new HTTPException(status, {
    message,
    ...(headers ? { res: new Response(null, { status, headers }) } : {}),
  });
}

/** Answers a broker refusal: its status (see README, "Errors"), and `Retry-After` for a capacity limit. */
export function failWithPipeError(error: PipeError): never {
  fail(
    statusOfPipeError(error),
    error.message,
    error instanceof CapacityError ? { 'Retry-After': '1' } : undefined,
  );
}

/** The status a broker refusal is answered with (see README: "Errors"). */
export function statusOfPipeError(error: PipeError): ContentfulStatusCode {
  if (error instanceof PipeBusyError) return 409;
  if (error instanceof ReceiverCountMismatchError) return 400;
  if (error instanceof CapacityError) return 429;
  if (error instanceof BrokerClosedError || error instanceof BrokerUnavailableError) return 503;
  // The peer this request depends on failed, as an upstream would.
  if (error instanceof SenderAbortedError) return 502;
  return 500;
}
