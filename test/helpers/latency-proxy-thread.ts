import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import type { LatencyProxy } from './latency-proxy.js';

/** A latency proxy whose calls are acknowledged by its thread. */
export interface ThreadedLatencyProxy extends LatencyProxy {
  /** Resolves once the proxy's thread has taken the new delay. */
  setDelay(ms: number): Promise<void>;
}

const CALL_TIMEOUT_MS = 10_000;

/** Started inside the thread after the proxy's own code: runs it and answers the test's calls. */
const BOOT = `
import { parentPort, workerData } from 'node:worker_threads';
const proxy = await startLatencyProxy(workerData.targetPort, workerData.targetHost);
parentPort.on('message', async (call) => {
  try {
    if (call.op === 'delay') proxy.setDelay(call.ms);
    else if (call.op === 'cut') proxy.cut();
    else if (call.op === 'close') await proxy.close();
    parentPort.postMessage({ id: call.id });
  } catch (error) {
    parentPort.postMessage({ id: call.id, error: String(error) });
  }
});
parentPort.postMessage({ port: proxy.port });
`;

/**
 * `startLatencyProxy` in a worker thread of its own. A proxy in the test's thread shares its event loop with
 * whatever else the test does (generating and checking transfers, polling): each of those pauses delays
 * every proxied byte, which the servers behind it rightly measure as latency of their Redis. In a thread of
 * its own the proxy adds only the delay it is told to (and what the machine's scheduler adds).
 */
export async function startLatencyProxyThread(
  targetPort: number,
  targetHost = '127.0.0.1',
): Promise<ThreadedLatencyProxy> {
  // The proxy's own source, as JavaScript: Node runs no TypeScript in a thread, and one proxy is enough.
  const source = readFileSync(new URL('./latency-proxy.ts', import.meta.url), 'utf8');
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(outputText + BOOT)}`), {
    workerData: { targetPort, targetHost },
  });
  const pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  let failure: Error | undefined;
  const failAll = (error: Error) => {
    failure ??= error;
    for (const call of pending.values()) call.reject(error);
    pending.clear();
  };
  worker.on('error', failAll);
  worker.on('exit', (code) => failAll(new Error(`latency proxy thread exited with ${code}`)));

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('latency proxy thread did not start')), CALL_TIMEOUT_MS);
    worker.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    worker.once('message', (message: { port: number }) => {
      clearTimeout(timer);
      resolve(message.port);
    });
  });
  worker.on('message', (message: { id?: number; error?: string }) => {
    if (message.id === undefined) return;
    const call = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) call?.reject(new Error(message.error));
    else call?.resolve();
  });

  let nextId = 0;
  const call = (op: string, extra: Record<string, unknown> = {}): Promise<void> => {
    if (failure) return Promise.reject(failure);
    const id = nextId++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`latency proxy thread: no answer to ${op} within ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
      pending.set(id, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      worker.postMessage({ op, id, ...extra });
    });
  };
  let closing: Promise<void> | undefined;

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    setDelay(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency proxy: bad delay ${ms}`);
      return call('delay', { ms });
    },
    cut() {
      void call('cut').catch(() => {});
    },
    close() {
      closing ??= call('close').finally(() => worker.terminate().then(() => {}));
      return closing;
    },
  };
}
