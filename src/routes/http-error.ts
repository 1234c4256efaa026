import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import {
  BrokerClosedError,
  BrokerUnavailableError,
  CapacityError,
  NothingToResumeError,
  PipeBusyError,
  type PipeError,
  ReceiverCountMismatchError,
  ResumeOffsetError,
  ResumeUnsupportedError,
  SenderAbortedError,
} from '../broker/errors.js';
import { RESUME_FROM_HEADER, UPLOAD_OFFSET_HEADER } from '../protocol/resumable.js';

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

/**
 * Headers that help the client act on a refusal: a sender learns the offset to continue from, a receiver
 * the first byte it can still be served (`X-Edgepipe-Resume-From`).
 */
function hintsOf(error: PipeError, role: 'sender' | 'receiver'): Record<string, string> | undefined {
  // Exposed, so a page on another origin reads them too (none of them is CORS-safelisted).
  const expose = (name: string) => ({ 'Access-Control-Expose-Headers': name });
  if (error instanceof CapacityError) return { 'Retry-After': '1', ...expose('Retry-After') };
  if (error instanceof ResumeOffsetError) {
    return role === 'sender'
      ? { [UPLOAD_OFFSET_HEADER]: String(error.to), ...expose(UPLOAD_OFFSET_HEADER) }
      : {
          'Content-Range': 'bytes */*',
          [RESUME_FROM_HEADER]: String(error.from),
          ...expose(`Content-Range, ${RESUME_FROM_HEADER}`),
        };
  }
  return undefined;
}

/**
 * Answers a broker refusal: its status (see README, "Errors"), and headers that help the client retry.
 * `role` matters for one case: an offset a receiver cannot be served is a 416 (it asked with a Range), an
 * offset a sender cannot continue from is a 409 with the `Upload-Offset` it should use.
 */
export function failWithPipeError(error: PipeError, role: 'sender' | 'receiver' = 'sender'): never {
  const status = error instanceof ResumeOffsetError && role === 'receiver' ? 416 : statusOfPipeError(error);
  fail(status, error.message, hintsOf(error, role));
}

/** The status a broker refusal is answered with (see README: "Errors"). */
export function statusOfPipeError(error: PipeError): ContentfulStatusCode {
  if (error instanceof PipeBusyError) return 409;
  if (error instanceof NothingToResumeError || error instanceof ResumeOffsetError) return 409;
  if (error instanceof ResumeUnsupportedError) return 501;
  if (error instanceof ReceiverCountMismatchError) return 400;
  if (error instanceof CapacityError) return 429;
  if (error instanceof BrokerClosedError || error instanceof BrokerUnavailableError) return 503;
  // The peer this request depends on failed, as an upstream would.
  if (error instanceof SenderAbortedError) return 502;
  return 500;
}
