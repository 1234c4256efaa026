import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { run } from './helpers/processes.js';
import { rawExchange as rawOutcome } from './helpers/raw-http.js';
import { startTestServer } from './helpers/server.js';

let server: RunningServer;
beforeAll(async () => {
  server = await startTestServer({ limits: { maxReceivers: 8 } });
});
afterAll(async () => {
  await server.close();
});

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the broker has `waiting` parties waiting (a receiver or sender is in place). */
async function untilWaiting(waiting: number): Promise<void> {
  for (let i = 0; i < 500 && server.broker.stats().waiting !== waiting; i++) await delay(5);
  expect(server.broker.stats().waiting).toBe(waiting);
}

/** Raw HTTP/1.x on a socket: for what fetch and curl cannot send or would hide. */
function rawExchange(request: string | Buffer, { endAfterWrite = false } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(server.port, '127.0.0.1');
    let response = '';
    socket.on('data', (d) => {
      response += d.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(response));
    socket.write(request);
    if (endAfterWrite) socket.end();
    setTimeout(() => socket.destroy(), 5000).unref();
  });
}

describe('end to end with fetch', () => {
  it('receiver first and sender first, binary-safe', async () => {
    const body = randomBytes(300_000);
    const receiving = fetch(`${server.url}/e2e/r-first`);
    await untilWaiting(1);
    const sent = await fetch(`${server.url}/e2e/r-first`, { method: 'PUT', body });
    const received = await receiving;
    expect(sha256(new Uint8Array(await received.arrayBuffer()))).toBe(sha256(body));
    expect(await sent.text()).toContain('[INFO] Sent successfully!');

    const sending = fetch(`${server.url}/e2e/s-first`, { method: 'POST', body });
    await untilWaiting(1);
    const received2 = await fetch(`${server.url}/e2e/s-first`);
    expect(sha256(new Uint8Array(await received2.arrayBuffer()))).toBe(sha256(body));
    expect((await sending).status).toBe(200);
  });

  it('streams: the receiver gets the first bytes while the sender is still sending', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode('first part;'));
        await held;
        controller.enqueue(new TextEncoder().encode('second part'));
        controller.close();
      },
    });
    const sending = fetch(`${server.url}/e2e/stream`, { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const received = await fetch(`${server.url}/e2e/stream`);
    const reader = received.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('first part;');
    release();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read())
      rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('second part');
    await (await sending).text();
  });

  it('n=3 with every receiver getting the whole body', async () => {
    const body = randomBytes(2 * 1024 * 1024);
    const receivers = Array.from({ length: 3 }, () => fetch(`${server.url}/e2e/n3?n=3`));
    await untilWaiting(3);
    const sent = await fetch(`${server.url}/e2e/n3?n=3`, { method: 'PUT', body });
    const hashes = await Promise.all(
      receivers.map(async (r) => sha256(new Uint8Array(await (await r).arrayBuffer()))),
    );
    expect(hashes).toEqual([sha256(body), sha256(body), sha256(body)]);
    expect(await sent.text()).toContain('All receiver(s) was/were received successfully.');
  });
});

describe('end to end with curl', () => {
  it('curl -T sends and curl receives a 200 MiB file byte-exact (sha256)', async () => {
    const size = 200 * 1024 * 1024;
    const data = randomBytes(size);
    const receiving = run('curl', ['-sSf', `${server.url}/e2e/big`], { timeoutMs: 120_000 });
    await untilWaiting(1);
    const sending = run('curl', ['-sSf', '-T', '-', `${server.url}/e2e/big`], {
      input: data,
      timeoutMs: 120_000,
    });
    const [received, sent] = await Promise.all([receiving, sending]);
    expect(received.code, received.stderr).toBe(0);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.stdout.length).toBe(size);
    expect(sha256(received.stdout)).toBe(sha256(data));
    expect(sent.stdout.toString()).toContain('[INFO] Sent successfully!');
  });

  it('curl -F uploads a form; the receiver gets the file part with its name', async () => {
    const receiving = run('curl', ['-sSf', '-D', '-', `${server.url}/e2e/form`]);
    await untilWaiting(1);
    const sent = await run(
      'curl',
      ['-sSf', '-F', 'file=@-;filename=notes.txt;type=text/plain', `${server.url}/e2e/form`],
      {
        input: 'form body\n',
      },
    );
    const received = await receiving;
    expect(sent.code, sent.stderr).toBe(0);
    const text = received.stdout.toString();
    expect(text).toMatch(/content-disposition: form-data; name="file"; filename="notes.txt"/i);
    expect(text).toMatch(/content-type: text\/plain/i);
    expect(text.endsWith('\r\n\r\nform body\n')).toBe(true);
  });

  it('an HTTP/1.0 receiver gets the body without chunked encoding', async () => {
    const receiving = run('curl', ['-sS', '--http1.0', '-D', '-', `${server.url}/e2e/h10`]);
    await untilWaiting(1);
    await run('curl', ['-sSf', '-T', '-', `${server.url}/e2e/h10`], { input: 'old client\n' });
    const received = await receiving;
    expect(received.code, received.stderr).toBe(0);
    const text = received.stdout.toString();
    expect(text).not.toMatch(/transfer-encoding/i);
    expect(text.endsWith('\r\n\r\nold client\n')).toBe(true);
  });

  it('an HTTP/1.0 request is answered with an HTTP/1.0 status line', async () => {
    const answer = await rawExchange('GET /version HTTP/1.0\r\nHost: x\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.0 200 OK\r\n/);
  });

  it('an HTTP/1.0 sender gets its transcript whole, with Content-Length; a 1.0 receiver a close-delimited body', async () => {
    const receiving = rawExchange('GET /e2e/h10-send HTTP/1.0\r\nHost: x\r\n\r\n');
    await untilWaiting(1);
    const answer = await rawExchange(
      'PUT /e2e/h10-send HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    );
    const [head, transcript] = answer.split('\r\n\r\n') as [string, string];
    expect(head).toMatch(/^HTTP\/1\.0 200 OK\r\n/);
    expect(head).not.toMatch(/transfer-encoding/i);
    expect(head).toMatch(new RegExp(`\r\ncontent-length: ${Buffer.byteLength(transcript)}\r\n`, 'i'));
    expect(transcript).toContain('[INFO] All receiver(s) was/were received successfully.\n');
    const received = await receiving;
    expect(received).toMatch(/^HTTP\/1\.0 200 OK\r\n/);
    expect(received.endsWith('\r\n\r\nhello')).toBe(true);

    // A chunked 1.1 upload has no length to pass on: the 1.0 receiver's body ends with the connection.
    const chunkedReceiving = rawExchange('GET /e2e/h10-chunked HTTP/1.0\r\nHost: x\r\n\r\n');
    await untilWaiting(1);
    const sent = await run('curl', ['-sSf', '-T', '-', `${server.url}/e2e/h10-chunked`], {
      input: 'streamed',
    });
    expect(sent.code).toBe(0);
    const chunked = await chunkedReceiving;
    expect(chunked).not.toMatch(/transfer-encoding|content-length/i);
    expect(chunked.endsWith('\r\n\r\nstreamed')).toBe(true);
  });

  it('Expect: 100-continue uploads work', async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const receiving = run('curl', ['-sSf', `${server.url}/e2e/expect`]);
    await untilWaiting(1);
    const sent = await run(
      'curl',
      ['-sSf', '-H', 'Expect: 100-continue', '-T', '-', `${server.url}/e2e/expect`],
      {
        input: data,
      },
    );
    expect(sent.code, sent.stderr).toBe(0);
    expect(sha256((await receiving).stdout)).toBe(sha256(data));
  });

  it('a sender without Content-Type gives the receiver none (no default type is made up)', async () => {
    const receiving = run('curl', ['-sSf', '-D', '-', `${server.url}/e2e/untyped`]);
    await untilWaiting(1);
    await run('curl', ['-sSf', '-T', '-', `${server.url}/e2e/untyped`], { input: 'raw' });
    const head = (await receiving).stdout.toString();
    expect(head).not.toMatch(/^content-type:/im);
    expect(head).toMatch(/x-robots-tag: none/i);
    expect(head.endsWith('\r\n\r\nraw')).toBe(true);
  });

  it('an empty body arrives as an empty body', async () => {
    const receiving = run('curl', ['-sSf', '-D', '-', `${server.url}/e2e/empty`]);
    await untilWaiting(1);
    const sent = await run('curl', ['-sSf', '-X', 'POST', '--data-binary', '', `${server.url}/e2e/empty`]);
    expect(sent.code).toBe(0);
    const received = await receiving;
    expect(received.code).toBe(0);
    expect(received.stdout.toString()).toMatch(/content-length: 0\r\n/i);
    expect(received.stdout.toString().endsWith('\r\n\r\n')).toBe(true);
  });
});

describe('aborts: truncation is never silent', () => {
  it('sender aborts mid-body: the receiving curl exits non-zero', async () => {
    const receiving = run('curl', ['-sS', '-o', '/dev/null', `${server.url}/e2e/sender-abort`]);
    await untilWaiting(1);
    // A raw chunked upload that stops half way and hangs up.
    const socket = connect(server.port, '127.0.0.1');
    socket.write('PUT /e2e/sender-abort HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    socket.write(`10000\r\n${'a'.repeat(0x10000)}\r\n`);
    await delay(200);
    socket.destroy();
    const received = await receiving;
    expect(received.code).not.toBe(0);
    expect(received.stderr).toMatch(/curl: \(18\)|transfer closed/);
    await untilWaiting(0);
    expect(server.broker.stats().pipes).toBe(0);
  });

  it('sender with Content-Length hangs up early: the receiver sees the short count', async () => {
    const receiving = run('curl', ['-sS', '-o', '/dev/null', `${server.url}/e2e/short`]);
    await untilWaiting(1);
    await rawExchange('PUT /e2e/short HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly this', {
      endAfterWrite: true,
    });
    const received = await receiving;
    expect(received.code).not.toBe(0);
  });

  it('one of two receivers aborts: the sender is told and the other receiver gets everything', async () => {
    const size = 8 * 1024 * 1024;
    const data = randomBytes(size);
    const controller = new AbortController();
    const quitter = fetch(`${server.url}/e2e/r-abort?n=2`, { signal: controller.signal });
    const stayer = fetch(`${server.url}/e2e/r-abort?n=2`);
    await untilWaiting(2);
    const sending = fetch(`${server.url}/e2e/r-abort?n=2`, { method: 'PUT', body: data });
    const quitterRes = await quitter;
    const reader = quitterRes.body!.getReader();
    await reader.read();
    controller.abort();
    const kept = new Uint8Array(await (await stayer).arrayBuffer());
    expect(sha256(kept)).toBe(sha256(data));
    const transcript = await (await sending).text();
    expect(transcript).toContain('[INFO] A receiver aborted; 1 of 2 still receiving.');
    expect(transcript).toContain('[INFO] Sent successfully!');
  });

  it('the only receiver aborts: the sender is told and its request is closed', async () => {
    const controller = new AbortController();
    const receiving = fetch(`${server.url}/e2e/only-abort`, { signal: controller.signal });
    await untilWaiting(1);
    // An endless upload: only the broker can end it.
    let pulls = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        pulls++;
        c.enqueue(new Uint8Array(64 * 1024));
      },
    });
    const sending = fetch(`${server.url}/e2e/only-abort`, {
      method: 'PUT',
      body: endless,
      duplex: 'half',
    } as RequestInit);
    const res = await receiving;
    await res.body!.getReader().read();
    controller.abort();
    const sent = await sending;
    const transcript = await sent.text().catch((e: Error) => `(cut: ${e.message})`);
    expect(transcript).toContain('All receiver(s) was/were closed halfway.');
    expect(pulls).toBeGreaterThan(0);
    await untilWaiting(0);
    for (let i = 0; i < 100 && server.broker.stats().pipes > 0; i++) await delay(10);
    expect(server.broker.stats().pipes).toBe(0);
  });

  it('a waiting receiver that leaves frees the slot for the next one', async () => {
    const first = spawn('curl', ['-sS', `${server.url}/e2e/leave`]);
    await untilWaiting(1);
    first.kill('SIGKILL');
    await untilWaiting(0);
    const second = fetch(`${server.url}/e2e/leave`);
    await untilWaiting(1);
    await fetch(`${server.url}/e2e/leave`, { method: 'PUT', body: 'for the second' });
    expect(await (await second).text()).toBe('for the second');
  });
});

describe('bad input over the wire', () => {
  it('oversized request heads get 431 and the server keeps serving', async () => {
    const response = await rawExchange(`GET /p HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(response).toMatch(/^HTTP\/1\.1 431/);
    expect((await fetch(`${server.url}/version`)).status).toBe(200);
  });

  it('malformed requests get 400 and a transfer running beside them finishes byte-exact', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const receiving = fetch(`${server.url}/e2e/beside`);
    await untilWaiting(1);
    const sending = fetch(`${server.url}/e2e/beside`, { method: 'PUT', body: data });
    const garbage = [
      'NOT HTTP AT ALL\r\n\r\n',
      'PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET /x HTTP/1.1\r\nHost: x\r\nBad\u0001Header: y\r\n\r\n',
      'PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n',
    ];
    // Each gets a 400 and a close, at once: silence (the test giving up) is a failure, not a close.
    const answers = await Promise.all(garbage.map((g) => rawOutcome(server.port, g, 3000)));
    for (const [i, answer] of answers.entries()) {
      expect({ request: garbage[i], status: answer.status, end: answer.end }).toEqual({
        request: garbage[i],
        status: 400,
        end: 'closed',
      });
    }
    const received = new Uint8Array(await (await receiving).arrayBuffer());
    expect(sha256(received)).toBe(sha256(data));
    expect(await (await sending).text()).toContain('Sent successfully');
  });

  it('uses node:http for a request with a path of raw bytes and a dot segment: refused, still answers', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: server.port, path: '/%00%ff/../x?n=1', method: 'HEAD' },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      req.end();
    });
    // The `..` would make it name `/x`: a dotted target is refused (issue 11, item 3).
    expect(status).toBe(400);
  });
});
