import { type ByteSource, streamOfSource } from '../../byte-source.js';

/** Workers' stream that sends a declared length (plain streams go out chunked, without Content-Length). */
declare const FixedLengthStream: new (length: number) => ReadableWritablePair<Uint8Array, Uint8Array>;
/** Workers' native pass-through of bytes: no JS runs per chunk, unlike a `TransformStream`. */
declare const IdentityTransformStream: new () => ReadableWritablePair<Uint8Array, Uint8Array>;

/**
 * The native pass-through a body handed over whole goes through in a Durable Object: a FixedLengthStream
 * when the length is known (the receiver gets Content-Length, and a body cut short errors its response),
 * else an IdentityTransformStream. Measured under workerd (issue 16): a JS TransformStream here was 4x
 * slower at 4x the CPU, as bodies arrive in 2 to 4 KB chunks.
 */
export function nativePassThrough(length: number | undefined): ReadableWritablePair<Uint8Array, Uint8Array> {
  return length === undefined ? new IdentityTransformStream() : new FixedLengthStream(length);
}

/** The length a response declares, when it is a plain decimal (what a FixedLengthStream can take). */
function declaredLength(headers: Headers): number | undefined {
  const length = headers.get('content-length');
  return length !== null && /^[0-9]{1,15}$/.test(length) ? Number(length) : undefined;
}

/**
 * The init of a streamed body as Workers must send it: the bytes go out as the sender sent them. Workers
 * would gzip a text/* body for a client that accepts it (undici's fetch does), dropping Content-Length and
 * re-chunking every transfer.
 */
function identityInit(init: ResponseInit): { init: ResponseInit; length: number | undefined } {
  const headers = new Headers(init.headers);
  headers.set('Cache-Control', 'no-store, no-transform');
  headers.set('Content-Encoding', 'identity');
  return {
    init: { ...init, headers, encodeBody: 'manual' } as ResponseInit,
    length: declaredLength(headers),
  };
}

/**
 * A streaming Response over a web stream. Workers sends a plain stream chunked and drops its Content-Length;
 * a declared length goes through a FixedLengthStream instead, so the receiver gets Content-Length and a body
 * cut short is an error at the client (an errored chunked body may end like a clean one, as seen under
 * wrangler dev).
 */
export function streamingResponseOf(stream: ReadableStream<Uint8Array>, init: ResponseInit): Response {
  const sent = identityInit(init);
  if (sent.length === undefined) return new Response(stream, sent.init);
  const fixed = new FixedLengthStream(sent.length);
  stream.pipeTo(fixed.writable).catch(() => {});
  return new Response(fixed.readable, sent.init);
}

/**
 * The Response of a stream out of `nativePassThrough`, sent as it is: it declares its own length (piping it
 * into another FixedLengthStream deadlocked under workerd).
 */
export function passedResponse(stream: ReadableStream<Uint8Array>, init: ResponseInit): Response {
  return new Response(stream, identityInit(init).init);
}

/** `streamingResponseOf` for a ByteSource (a transcript, a pipe's bytes read chunk by chunk). */
export function streamingResponse(source: ByteSource, init: ResponseInit): Response {
  return streamingResponseOf(streamOfSource(source), init);
}
