import { declaredResumable, OFFSET_PARAM, RESUMABLE_HEADER } from '../protocol/resumable.js';
import { fail } from './http-error.js';

/** The longest decimal offset taken: 15 digits stay below 2^53, so the number is exact. */
const OFFSET = /^[0-9]{1,15}$/;

function offsetParam(url: URL): number | undefined {
  const values = url.searchParams.getAll(OFFSET_PARAM);
  if (values.length === 0) return undefined;
  if (values.length > 1) fail(400, 'offset is given more than once.');
  const raw = values[0]!;
  if (!OFFSET.test(raw)) {
    fail(400, `offset should be a whole number of bytes, but offset = '${raw.slice(0, 32)}'.`);
  }
  return Number(raw);
}

/** How a receiver asked to resume: where, and whether through `Range` (answered 206) or `?offset=`. */
export interface ReceiverResumeRequest {
  readonly offset: number;
  readonly viaRange: boolean;
}

/**
 * A receiver's resume request: `?offset=N`, or `Range: bytes=N-` with N > 0 (what `curl -C -` sends).
 * `bytes=0-` (media players open every stream that way) and other range forms are a plain receive, as
 * RFC 9110 lets a server ignore a Range it does not serve.
 */
export function receiverResumeOf(url: URL, headers: Headers): ReceiverResumeRequest | undefined {
  const param = offsetParam(url);
  const range = /^\s*bytes\s*=\s*([0-9]{1,15})\s*-\s*$/i.exec(headers.get('range') ?? '');
  const fromRange = range ? Number(range[1]) : undefined;
  if (param !== undefined && fromRange !== undefined && param !== fromRange) {
    fail(400, `offset=${param} and Range bytes=${fromRange}- disagree.`);
  }
  if (param !== undefined) return { offset: param, viaRange: fromRange !== undefined };
  if (fromRange !== undefined && fromRange > 0) return { offset: fromRange, viaRange: true };
  return undefined;
}

/** A sender's resume request: `?offset=N`, the byte of the body its upload starts at. */
export function senderResumeOf(url: URL): number | undefined {
  return offsetParam(url);
}

/** The body's full length, when the sender declared one (its Content-Length, passed to receivers). */
export function declaredLengthOf(headers: Headers): number | undefined {
  const raw = headers.get('content-length');
  return raw !== null && OFFSET.test(raw) ? Number(raw) : undefined;
}

/**
 * Whether a party may keep its place for a resume when it drops: it declared it can resume
 * (`X-Edgepipe-Resumable: 1`), or it is resuming already (`resuming`: a client that resumes once can do it
 * again). A malformed value is refused, not guessed.
 */
export function resumableOf(headers: Headers, resuming: boolean): boolean {
  const raw = headers.get(RESUMABLE_HEADER);
  const declared = declaredResumable(raw);
  if (declared === undefined) {
    fail(400, `${RESUMABLE_HEADER} should be 1 or 0, but it is '${(raw ?? '').slice(0, 32)}'.`);
  }
  return declared || resuming;
}
