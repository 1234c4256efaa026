import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runCommand } from '../src/adapter/node/command-runner.js';
import type { SelfHealEvent } from '../src/selfheal/hook-types.js';
import { runHook } from '../src/selfheal/run-hook.js';
import { postWebhook } from '../src/selfheal/webhook.js';

// Quotes, spaces and a non-ASCII character: the signature must cover the exact UTF-8 bytes, and the command's
// environment must carry them through without a shell mangling them.
const event: SelfHealEvent = {
  rule: 'redis "p99" spike',
  metric: 'redis.command',
  action: 'rollback',
  quantile: 0.99,
  valueMs: 412.5,
  thresholdMs: 250,
  windows: 3,
  instance: 'edge-1 (zürich)',
  time: '2025-01-02T03:04:05.000Z',
};

interface Received {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

interface Receiver {
  readonly url: string;
  readonly received: Received[];
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A webhook receiver on a free port; `answer` replies to the nth request (0-based), or never, if it doesn't. */
async function startReceiver(answer: (index: number, res: ServerResponse) => void): Promise<Receiver> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ method: req.method!, headers: req.headers, body: Buffer.concat(chunks) });
      answer(received.length - 1, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/edgepipe`, received };
}

const reply = (status: number) => (_index: number, res: ServerResponse) => res.writeHead(status).end('{}');

/** A port nobody listens on: bound, then released. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('postWebhook', () => {
  it('posts the event as JSON, signed over the exact body bytes', async () => {
    const receiver = await startReceiver(reply(200));
    const outcome = await postWebhook(receiver.url, event, { secret: 's3cret', timeoutMs: 2000 });

    expect(outcome).toMatchObject({
      kind: 'webhook',
      ok: true,
      status: 200,
      attempts: 1,
      detail: 'HTTP 200 after 1 attempt',
    });
    expect(receiver.received).toHaveLength(1);
    const [request] = receiver.received;
    expect(request!.method).toBe('POST');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers['user-agent']).toBe('edgepipe-selfheal');
    expect(request!.headers['x-edgepipe-event']).toBe('selfheal');
    expect(JSON.parse(request!.body.toString('utf8'))).toEqual(event);
    const expected = createHmac('sha256', 's3cret').update(request!.body).digest('hex');
    expect(request!.headers['x-edgepipe-signature']).toBe(`sha256=${expected}`);
    expect(expected).not.toBe(createHmac('sha256', 'other').update(request!.body).digest('hex'));
  });

  it('sends no signature without a secret', async () => {
    const receiver = await startReceiver(reply(204));
    const outcome = await postWebhook(receiver.url, event, { timeoutMs: 2000 });

    expect(outcome).toMatchObject({ ok: true, status: 204, attempts: 1 });
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.headers).not.toHaveProperty('x-edgepipe-signature');
    expect(JSON.parse(receiver.received[0]!.body.toString('utf8'))).toEqual(event);
  });

  it('retries 503 with growing waits until the receiver recovers', async () => {
    const receiver = await startReceiver((index, res) => res.writeHead(index < 2 ? 503 : 200).end());
    const outcome = await postWebhook(receiver.url, event, { secret: 'k', timeoutMs: 5000 });

    expect(outcome).toMatchObject({
      ok: true,
      status: 200,
      attempts: 3,
      detail: 'HTTP 200 after 3 attempts',
    });
    expect(receiver.received).toHaveLength(3);
    // Waits of 75-100 ms, then 150-200 ms: retries did back off.
    expect(outcome.durationMs).toBeGreaterThanOrEqual(220);
    expect(outcome.durationMs).toBeLessThan(2000);
    // Every attempt carries the same, still valid, signature.
    const signatures = new Set(receiver.received.map((r) => r.headers['x-edgepipe-signature']));
    expect([...signatures]).toEqual([
      `sha256=${createHmac('sha256', 'k').update(receiver.received[2]!.body).digest('hex')}`,
    ]);
  });

  it('retries 429', async () => {
    const receiver = await startReceiver((index, res) => res.writeHead(index === 0 ? 429 : 202).end());
    const outcome = await postWebhook(receiver.url, event, { timeoutMs: 5000 });

    expect(outcome).toMatchObject({
      ok: true,
      status: 202,
      attempts: 2,
      detail: 'HTTP 202 after 2 attempts',
    });
  });

  it('gives up on a receiver that keeps failing, within the budget', async () => {
    const receiver = await startReceiver(reply(503));
    const outcome = await postWebhook(receiver.url, event, { timeoutMs: 1000 });

    expect(outcome.ok).toBe(false);
    expect(outcome.status).toBe(503);
    // Attempts at about 0, 100, 300 and 700 ms; the next wait (~800 ms) would cross the deadline.
    expect(outcome.attempts).toBeGreaterThanOrEqual(3);
    expect(outcome.attempts).toBe(receiver.received.length);
    expect(outcome.detail).toBe(
      `gave up after ${outcome.durationMs} ms: HTTP 503 (${outcome.attempts} attempts)`,
    );
    expect(outcome.durationMs).toBeLessThanOrEqual(1000 + 500);
  });

  it('gives up on a receiver that never answers when the budget runs out', async () => {
    const receiver = await startReceiver(() => {});
    const outcome = await postWebhook(receiver.url, event, { timeoutMs: 400 });

    expect(outcome).toMatchObject({ kind: 'webhook', ok: false, attempts: 1 });
    expect(outcome.status).toBeUndefined();
    expect(outcome.detail).toMatch(/^gave up after \d+ ms: no response within \d+ ms \(1 attempt\)$/);
    expect(outcome.durationMs).toBeGreaterThanOrEqual(350);
    expect(outcome.durationMs).toBeLessThanOrEqual(400 + 500);
    expect(receiver.received).toHaveLength(1);
  });

  it('does not retry a 404', async () => {
    const receiver = await startReceiver(reply(404));
    const outcome = await postWebhook(receiver.url, event, { timeoutMs: 5000 });

    expect(outcome).toMatchObject({ ok: false, status: 404, attempts: 1, detail: 'HTTP 404 (not retried)' });
    expect(receiver.received).toHaveLength(1);
  });

  it('does not follow a redirect', async () => {
    const receiver = await startReceiver((_index, res) =>
      res.writeHead(302, { Location: '/elsewhere' }).end(),
    );
    const outcome = await postWebhook(receiver.url, event, { timeoutMs: 5000 });

    expect(outcome).toMatchObject({
      ok: false,
      status: 302,
      attempts: 1,
      detail: 'HTTP 302 (redirect not followed)',
    });
    expect(receiver.received).toHaveLength(1);
  });

  it('retries a refused connection while the budget lasts', async () => {
    const port = await freePort();
    // A budget of a few backoff steps: on a loaded machine a last attempt cut by a short budget reports
    // "no response" instead of the refusal, which is not what this test is about.
    const outcome = await postWebhook(`http://127.0.0.1:${port}/hook`, event, { timeoutMs: 2000 });

    expect(outcome.ok).toBe(false);
    expect(outcome.status).toBeUndefined();
    expect(outcome.attempts).toBeGreaterThanOrEqual(2);
    expect(outcome.detail).toMatch(/^gave up after \d+ ms: fetch failed: .*ECONNREFUSED.* \(\d+ attempts\)$/);
    expect(outcome.durationMs).toBeLessThanOrEqual(2000 + 1000);
  });

  it('reports a bad URL without echoing it', async () => {
    const outcome = await postWebhook('not a url?token=secret', event, { timeoutMs: 1000 });

    expect(outcome).toMatchObject({ kind: 'webhook', ok: false, attempts: 0, detail: 'invalid webhook URL' });
  });
});

describe('runHook commands', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgepipe-hooks-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('hands the event to the command as JSON in EDGEPIPE_EVENT', async () => {
    const outFile = join(dir, 'event.json');
    const outcomes = await runHook(
      { command: ['sh', '-c', 'printf "%s" "$EDGEPIPE_EVENT" > "$0"', outFile], timeoutMs: 5000 },
      event,
      { runCommand },
    );

    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({
      kind: 'command',
      ok: true,
      exitCode: 0,
      signal: null,
      timedOut: false,
      detail: 'exit 0',
    });
    expect(JSON.parse(readFileSync(outFile, 'utf8'))).toEqual(event);
  });

  it('sets the event fields as variables and quotes the last line of output', async () => {
    const script =
      'echo first; echo "$EDGEPIPE_RULE|$EDGEPIPE_METRIC|$EDGEPIPE_ACTION|$EDGEPIPE_VALUE_MS|$EDGEPIPE_THRESHOLD_MS|$EDGEPIPE_INSTANCE"; echo';
    const [outcome] = await runHook({ command: ['sh', '-c', script], timeoutMs: 5000 }, event, {
      runCommand,
    });

    expect(outcome).toMatchObject({
      ok: true,
      detail: 'exit 0: redis "p99" spike|redis.command|rollback|412.5|250|edge-1 (zürich)',
    });
  });

  it('fails on a non-zero exit, quoting stderr', async () => {
    const [plain] = await runHook({ command: ['sh', '-c', 'exit 3'], timeoutMs: 5000 }, event, {
      runCommand,
    });
    expect(plain).toMatchObject({ kind: 'command', ok: false, exitCode: 3, signal: null, timedOut: false });
    expect(plain!.detail).toBe('exit 3');

    const [loud] = await runHook(
      { command: ['sh', '-c', 'echo "rollback refused" >&2; exit 3'], timeoutMs: 5000 },
      event,
      {
        runCommand,
      },
    );
    expect(loud).toMatchObject({ ok: false, exitCode: 3, detail: 'exit 3: rollback refused' });
  });

  it('kills a command that outlives the budget', async () => {
    const started = Date.now();
    const [outcome] = await runHook({ command: ['sleep', '10'], timeoutMs: 200 }, event, { runCommand });

    expect(outcome).toMatchObject({
      kind: 'command',
      ok: false,
      exitCode: null,
      signal: 'SIGKILL',
      timedOut: true,
      detail: 'killed after 200 ms (timeout)',
    });
    expect(outcome!.durationMs).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('kills what a timed-out command started too', async () => {
    // sh waits for `sleep`, which holds the output pipes: killing sh alone would leave the hook hanging 10 s.
    const started = Date.now();
    const [outcome] = await runHook({ command: ['sh', '-c', 'sleep 10; echo late'], timeoutMs: 200 }, event, {
      runCommand,
    });

    expect(outcome).toMatchObject({ ok: false, timedOut: true, signal: 'SIGKILL' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('is done when the command exits, even if something it left behind holds its output open', async () => {
    const started = Date.now();
    const [outcome] = await runHook({ command: ['sh', '-c', 'sleep 10 & echo $!'], timeoutMs: 5000 }, event, {
      runCommand,
    });
    const leftover = Number(/^exit 0: (\d+)$/.exec(outcome!.detail)?.[1]);
    if (leftover > 0) process.kill(leftover, 'SIGKILL');

    expect(outcome).toMatchObject({ ok: true, exitCode: 0, timedOut: false });
    expect(leftover).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('reports a program that does not exist', async () => {
    const [outcome] = await runHook({ command: ['edgepipe-no-such-program'], timeoutMs: 5000 }, event, {
      runCommand,
    });

    expect(outcome).toMatchObject({ kind: 'command', ok: false });
    expect(outcome!.detail).toMatch(/^cannot run edgepipe-no-such-program: not found \(.*ENOENT\)$/);
    expect(outcome!.exitCode).toBeUndefined();
  });

  it('fails a command on a runtime without processes', async () => {
    const outcomes = await runHook({ command: ['true'], timeoutMs: 5000 }, event);

    expect(outcomes).toEqual([
      {
        kind: 'command',
        ok: false,
        detail: 'commands cannot run on this runtime',
        durationMs: expect.any(Number),
      },
    ]);
  });

  it('runs the webhook and the command together', async () => {
    const receiver = await startReceiver((_index, res) => setTimeout(() => res.writeHead(200).end(), 1000));
    const started = Date.now();
    const outcomes = await runHook(
      { url: receiver.url, secret: 'both', command: ['sh', '-c', 'sleep 1; echo done'], timeoutMs: 5000 },
      event,
      { runCommand },
    );

    expect(outcomes).toMatchObject([
      { kind: 'webhook', ok: true, status: 200, attempts: 1 },
      { kind: 'command', ok: true, exitCode: 0, detail: 'exit 0: done' },
    ]);
    expect(receiver.received).toHaveLength(1);
    // Side by side: about 1 s, not 2 (with room for a busy machine).
    expect(Date.now() - started).toBeLessThan(1800);
  });
});

describe('runCommand', () => {
  it('rejects an empty argv', async () => {
    await expect(runCommand([], {}, 1000)).rejects.toThrow('empty command');
  });

  it('keeps only the last 4 KiB of output', async () => {
    const result = await runCommand(
      ['sh', '-c', 'head -c 10000 /dev/zero | tr "\\0" a; echo; echo "tail of $NAME" >&2'],
      { NAME: 'stderr' },
      5000,
    );

    expect(result).toMatchObject({ exitCode: 0, signal: null, timedOut: false });
    expect(Buffer.byteLength(result.output)).toBe(4096);
    expect(result.output.endsWith('a\ntail of stderr\n')).toBe(true);
  });
});
