import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, run, spawnServer } from './helpers/processes.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

function configFile(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgepipe-test-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

describe('the edgepipe process', () => {
  it('a slow receiver slows the sender; the server holds a bounded window, not the upload', async () => {
    const server = await spawnServer();
    try {
      const total = 256 * 1024 * 1024;
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= total) return controller.close();
          const chunk = new Uint8Array(256 * 1024).fill(sent & 0xff);
          sent += chunk.length;
          controller.enqueue(chunk);
        },
      });
      const baseline = server.rssMiB();
      const receiving = fetch(`${server.url}/slow`);
      const sending = fetch(`${server.url}/slow`, { method: 'PUT', body, duplex: 'half' } as RequestInit);
      const reader = (await receiving).body!.getReader();
      let received = 0;
      let maxLead = 0;
      let maxRss = 0;
      // Read 48 MiB slowly: the sender could push the whole 256 MiB meanwhile if nothing held it back.
      while (received < 48 * 1024 * 1024) {
        const { done, value } = await reader.read();
        if (done) break;
        received += value.length;
        maxLead = Math.max(maxLead, sent - received);
        await delay(2);
        maxRss = Math.max(maxRss, server.rssMiB());
      }
      // Everything in flight: the 1 MiB window plus kernel socket buffers on both sides and the client's own
      // stream queues. Unbounded buffering would put this near 200 MiB.
      expect(maxLead).toBeLessThan(48 * 1024 * 1024);
      expect(maxRss - baseline).toBeLessThan(64);
      await reader.cancel();
      await (await sending).text().catch(() => '');
    } finally {
      server.kill();
    }
  });

  it('SIGTERM drains: new requests are refused, a running transfer finishes, then the process exits 0', async () => {
    const server = await spawnServer([], {});
    const data = randomBytes(32 * 1024 * 1024);
    const receiving = fetch(`${server.url}/drain`);
    const sending = fetch(`${server.url}/drain`, { method: 'PUT', body: data });
    const waitingReceiver = fetch(`${server.url}/never-sent`);
    const res = await receiving;
    const reader = res.body!.getReader();
    const first = await reader.read();
    server.child.kill('SIGTERM');
    await delay(300);
    // The waiting receiver can never be served: it is told so instead of hanging.
    const waiting = await waitingReceiver;
    expect(waiting.status).toBe(503);
    expect(await waiting.text()).toBe('[ERROR] The server is shutting down.\n');
    // A new connection is refused (the listener is closed).
    await expect(fetch(`${server.url}/version`)).rejects.toThrow();
    const chunks = [first.value!];
    for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(data));
    expect(await (await sending).text()).toContain('Sent successfully');
    expect(await server.exited()).toBe(0);
    expect(server.output()).toContain('SIGTERM: draining');
  });

  it('SIGTERM with a transfer that outlasts the grace period cuts it and exits', async () => {
    const server = await spawnServer(['--config', configFile({ server: { shutdownGraceMs: 300 } })]);
    const receiving = fetch(`${server.url}/stuck`);
    const endless = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await delay(20);
        controller.enqueue(new Uint8Array(1024));
      },
    });
    fetch(`${server.url}/stuck`, { method: 'PUT', body: endless, duplex: 'half' } as RequestInit).catch(
      () => {},
    );
    const res = await receiving;
    const reader = res.body!.getReader();
    await reader.read();
    server.child.kill('SIGTERM');
    const started = Date.now();
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) break;
      })(),
    ).rejects.toThrow();
    expect(await server.exited()).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('flags beat the environment, the environment beats the config file', async () => {
    const file = configFile({ server: { port: 1 }, limits: { maxReceivers: 3 } });
    const server = await spawnServer(['--config', file], { PORT: '2' });
    try {
      // --port 0 (from spawnServer) beat PORT=2 and the file's port 1; the file's limits still apply.
      expect(server.url).not.toMatch(/:(1|2)$/);
      const res = await fetch(`${server.url}/x?n=4`);
      expect(res.status).toBe(400);
      expect(await res.text()).toContain('at most 3');
    } finally {
      server.kill();
    }
  });

  it('a bad config is refused at start with a message naming the key', async () => {
    const file = configFile({ limits: { maxReceivers: 0 }, brokr: {} });
    const result = await run(process.execPath, [
      join(repoRoot, 'dist/cli/main.js'),
      'serve',
      '--config',
      file,
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('limits.maxReceivers');
    expect(result.stderr).toContain('brokr: unknown key');
    const badPort = await run(process.execPath, [
      join(repoRoot, 'dist/cli/main.js'),
      'serve',
      '--port',
      'eighty',
    ]);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain("server.port: --port must be a port number, got 'eighty'");
  });
});
