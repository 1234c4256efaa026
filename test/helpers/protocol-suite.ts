import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { describe, expect, it } from 'vitest';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ProtocolSuiteOptions {
  /**
   * The aborting sender declares its length (Content-Length). Where an errored body of unknown length can
   * end like a clean chunked one (Workers under wrangler dev), only a declared length makes a cut
   * detectable at the receiver.
   */
  readonly abortWithDeclaredLength?: boolean;
}

/** Starts an upload of `total` bytes (declared) and returns a way to push bytes and to cut it. */
function declaredUpload(url: string, total: number) {
  const request = httpRequest(url, { method: 'PUT', headers: { 'Content-Length': String(total) } });
  request.on('error', () => {});
  return { push: (bytes: Uint8Array) => request.write(bytes), cut: () => request.destroy() };
}

/** Starts an upload of unknown length (chunked) and returns a way to push bytes and to cut it. */
function streamedUpload(url: string) {
  const abort = new AbortController();
  let push!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      push = controller;
    },
  });
  fetch(url, { method: 'PUT', body, duplex: 'half', signal: abort.signal } as RequestInit).catch(() => {});
  return { push: (bytes: Uint8Array) => push.enqueue(bytes), cut: () => abort.abort() };
}

/**
 * The black-box protocol suite every runtime must pass, against a real server at `baseUrl()` (read when
 * each test runs, after the suite's `beforeAll` started it).
 */
export function runProtocolSuite(
  name: string,
  baseUrl: () => string,
  options: ProtocolSuiteOptions = {},
): void {
  // Paths of their own: suites may share one Redis, and a pipe one suite left must not meet another's.
  const p = `/p${randomBytes(4).toString('hex')}`;
  describe(`protocol on ${name}`, () => {
    it('sender first and receiver first, byte-exact', async () => {
      const data = randomBytes(300_000);
      const sending = fetch(`${baseUrl()}${p}/sender-first`, { method: 'PUT', body: data });
      await delay(100);
      const received = await fetch(`${baseUrl()}${p}/sender-first`);
      expect(sha256(new Uint8Array(await received.arrayBuffer()))).toBe(sha256(data));
      expect(await (await sending).text()).toContain('[INFO] Sent successfully!');

      const receiving = fetch(`${baseUrl()}${p}/receiver-first`);
      await delay(100);
      const sent = await fetch(`${baseUrl()}${p}/receiver-first`, { method: 'POST', body: data });
      expect(sha256(new Uint8Array(await (await receiving).arrayBuffer()))).toBe(sha256(data));
      expect(await sent.text()).toContain('All receiver(s) was/were received successfully.');
    });

    it('n=2: both receivers get the whole body', async () => {
      const data = randomBytes(1_000_000);
      const receivers = [fetch(`${baseUrl()}${p}/two?n=2`), fetch(`${baseUrl()}${p}/two?n=2`)];
      await delay(100);
      const sent = await fetch(`${baseUrl()}${p}/two?n=2`, { method: 'PUT', body: data });
      for (const receiver of receivers) {
        expect(sha256(new Uint8Array(await (await receiver).arrayBuffer()))).toBe(sha256(data));
      }
      expect(await sent.text()).toContain('Start sending to 2 receiver(s)!');
    });

    it('passes the headers through (text/html served as text/plain)', async () => {
      const receiving = fetch(`${baseUrl()}${p}/headers`);
      await delay(100);
      await fetch(`${baseUrl()}${p}/headers`, {
        method: 'PUT',
        body: '<b>hi</b>',
        headers: {
          'Content-Type': 'text/html',
          'Content-Disposition': 'attachment; filename="a.html"',
          'X-Piping': 'meta',
        },
      });
      const received = await receiving;
      expect(received.headers.get('content-type')).toBe('text/plain');
      expect(received.headers.get('content-disposition')).toBe('attachment; filename="a.html"');
      expect(received.headers.get('x-piping')).toBe('meta');
      expect(received.headers.get('content-length')).toBe('9');
      expect(await received.text()).toBe('<b>hi</b>');
    });

    it('50 MiB arrive byte-exact', async () => {
      const data = randomBytes(50 * 1024 * 1024);
      const receiving = fetch(`${baseUrl()}${p}/big`);
      await delay(100);
      const sent = fetch(`${baseUrl()}${p}/big`, { method: 'PUT', body: data });
      const received = await receiving;
      expect(received.status).toBe(200);
      expect(sha256(new Uint8Array(await received.arrayBuffer()))).toBe(sha256(data));
      expect(await (await sent).text()).toContain('Sent successfully');
    });

    it('a sender that aborts mid-body fails the receiver: no clean end', async () => {
      const receiving = fetch(`${baseUrl()}${p}/abort`);
      await delay(100);
      const url = `${baseUrl()}${p}/abort`;
      const upload = options.abortWithDeclaredLength ? declaredUpload(url, 1024 * 1024) : streamedUpload(url);
      upload.push(randomBytes(64 * 1024));
      const received = await receiving;
      const reader = received.body!.getReader();
      await reader.read();
      upload.cut();
      const rest = (async () => {
        for (;;) if ((await reader.read()).done) return 'clean end';
      })();
      await expect(rest).rejects.toThrow();
    });
  });
}
