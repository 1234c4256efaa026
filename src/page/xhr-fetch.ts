/** Called as a request's body goes up: the request's URL and the bytes of its body sent so far. */
export type UploadProgress = (url: URL, loaded: number) => void;

/**
 * A `fetch` for Blob bodies that reports upload progress, which `fetch` cannot: XMLHttpRequest underneath,
 * its answer streamed as it comes (the sender's transcript arrives line by line over minutes). Requests
 * without a Blob body (HEAD, a streamed body) go to the real `fetch`.
 */
export function xhrFetch(onUpload: UploadProgress): typeof fetch {
  return (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    if (!(init?.body instanceof Blob)) return fetch(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = init.body;
    return new Promise<Response>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(init.method ?? 'GET', url.href);
      const headers = new Headers(init.headers);
      headers.forEach((value, name) => {
        // The browser sets the length from the Blob and refuses a script's own.
        if (name !== 'content-length') xhr.setRequestHeader(name, value);
      });
      const encoder = new TextEncoder();
      let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
      let seen = 0;
      const stream = new ReadableStream<Uint8Array>({
        start: (c) => {
          controller = c;
        },
        cancel: () => xhr.abort(),
      });
      const flush = () => {
        const text = xhr.responseText;
        if (text.length > seen) {
          controller?.enqueue(encoder.encode(text.slice(seen)));
          seen = text.length;
        }
      };
      const fail = (why: string) => {
        const error = new TypeError(why);
        reject(error);
        try {
          controller?.error(error);
        } catch {
          // already closed
        }
      };
      xhr.upload.onprogress = (event) => onUpload(url, event.loaded);
      xhr.onreadystatechange = () => {
        if (xhr.readyState !== XMLHttpRequest.HEADERS_RECEIVED) return;
        resolve(
          new Response(stream, { status: xhr.status, statusText: xhr.statusText, headers: headersOf(xhr) }),
        );
      };
      xhr.onprogress = flush;
      xhr.onload = () => {
        flush();
        controller?.close();
      };
      xhr.onerror = () => fail('the connection broke');
      xhr.ontimeout = () => fail('the request timed out');
      xhr.onabort = () => fail('the request was aborted');
      const signal = init.signal;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      signal?.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(body);
    });
  };
}

function headersOf(xhr: XMLHttpRequest): Headers {
  const headers = new Headers();
  for (const line of xhr
    .getAllResponseHeaders()
    .trim()
    .split(/[\r\n]+/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return headers;
}
