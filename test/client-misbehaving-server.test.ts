// The client against a test-owned HTTP server that answers as a broken or busy server would: a wrong
// Content-Range on a resume, a Range ignored, a 503 with Retry-After, a 400. The client must check, wait
// or stop as docs/client.md says, never write bytes it cannot vouch for.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RunResult, repoRoot, run } from './helpers/processes.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const work = mkdtempSync(join(tmpdir(), 'edgepipe-misbehaving-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Handler = (request: IncomingMessage, response: ServerResponse, index: number) => void;

/** A server on 127.0.0.1 whose n-th request (HEADs included) goes to `handler`. */
async function serverOf(
  handler: Handler,
): Promise<{ url: string; requests: IncomingMessage[]; server: Server }> {
  const requests: IncomingMessage[] = [];
  const server = createServer((request, response) => {
    requests.push(request);
    handler(request, response, requests.length - 1);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

function edgepipe(args: string[]): Promise<RunResult> {
  return run(
    process.execPath,
    [
      join(repoRoot, 'dist/cli/main.js'),
      ...args,
      '--retry-base',
      '50ms',
      '--retry-cap',
      '200ms',
      '--retry-for',
      '20s',
    ],
    { env: { EDGEPIPE_STATE_DIR: join(work, 'state') }, timeoutMs: 30_000 },
  );
}

/** Answers HEAD as a resumable edgepipe server would. */
function resumableHead(response: ServerResponse): void {
  response.writeHead(200, { 'X-Edgepipe-State': 'transferring', 'X-Edgepipe-Resumable': '1' });
  response.end();
}

describe('the client against a misbehaving server', () => {
  const body = randomBytes(300_000);

  /** Sends the first 100,000 bytes of `body` with its full length declared, then cuts the connection. */
  const cutAfterFirstPart = (response: ServerResponse) => {
    response.writeHead(200, { 'Content-Length': String(body.length) });
    response.write(body.subarray(0, 100_000), () => setTimeout(() => response.socket?.destroy(), 50));
  };

  it('a resume answered with a Content-Range that starts elsewhere fails with exit 5', async () => {
    const { url, server, requests } = await serverOf((request, response) => {
      if (request.method === 'HEAD') return resumableHead(response);
      if (!request.headers.range) return cutAfterFirstPart(response);
      // Asked for the rest from 100,000: answers from 0, as a confused server or cache might.
      response.writeHead(206, { 'Content-Range': `bytes 0-${body.length - 1}/${body.length}` });
      response.end(body);
    });
    try {
      const output = join(work, 'range.out');
      const received = await edgepipe(['recv', `${url}/p`, output]);
      expect(received.code, received.stderr).toBe(5);
      expect(received.stderr).toMatch(/Content-Range/);
      expect(requests.some((r) => r.headers.range === 'bytes=100000-')).toBe(true);
      expect(readFileSync(output).equals(body.subarray(0, 100_000))).toBe(true);
    } finally {
      server.close();
    }
  });

  it('a server that ignores Range and sends the whole body again: exit 4, nothing appended', async () => {
    const { url, server } = await serverOf((request, response) => {
      if (request.method === 'HEAD') return resumableHead(response);
      if (!request.headers.range) return cutAfterFirstPart(response);
      response.writeHead(200, { 'Content-Length': String(body.length) });
      response.end(body);
    });
    try {
      const output = join(work, 'ignored.out');
      const received = await edgepipe(['recv', `${url}/p`, output]);
      expect(received.code, received.stderr).toBe(4);
      expect(received.stderr).toMatch(/cannot resume/);
      expect(readFileSync(output).length).toBe(100_000);
    } finally {
      server.close();
    }
  });

  it('a 503 with Retry-After is waited out as the server asks, then the body arrives whole', async () => {
    const { url, server } = await serverOf((request, response, index) => {
      if (request.method === 'HEAD') return resumableHead(response);
      if (index < 3) {
        response.writeHead(503, { 'Retry-After': '1', 'Content-Type': 'text/plain' });
        response.end('[ERROR] Busy, come back in a second.\n');
        return;
      }
      response.writeHead(200, { 'Content-Length': String(body.length) });
      response.end(body);
    });
    try {
      const started = performance.now();
      const received = await edgepipe(['recv', `${url}/p`, '-', '--progress', 'json']);
      expect(received.code, received.stderr).toBe(0);
      expect(sha256(received.stdout)).toBe(sha256(body));
      // The backoff alone (50 ms doubling to 200 ms) would have retried twice within half a second.
      expect(performance.now() - started).toBeGreaterThanOrEqual(1900);
      expect(received.stderr).toMatch(/HTTP 503: Busy, come back in a second\.: retrying in 1\.0 s/);
    } finally {
      server.close();
    }
  });

  it("a 400 is final: exit 3 with the server's one-line reason, asked once", async () => {
    const { url, server, requests } = await serverOf((request, response) => {
      if (request.method === 'HEAD') return resumableHead(response);
      response.writeHead(400, { 'Content-Type': 'text/plain' });
      response.end('[ERROR] The path is not allowed.\n');
    });
    try {
      const received = await edgepipe(['recv', `${url}/p`, '-']);
      expect(received.code, received.stderr).toBe(3);
      expect(received.stderr).toContain('the server refused it (400): The path is not allowed.');
      expect(requests.filter((r) => r.method === 'GET')).toHaveLength(1);
    } finally {
      server.close();
    }
  });
});
