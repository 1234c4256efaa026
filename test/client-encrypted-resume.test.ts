// Encrypted and framed transfers that resume after real cuts (issue 12): `edgepipe send --key-file`,
// `--passphrase` (EDGEPIPE_PASSPHRASE) and `--framed` to `edgepipe recv` on Redis with two instances, the
// sender on one and the receiver on the other, a cutting proxy in front of each. A resumed sealed stream
// must re-send identical ciphertext (same salt, same key, same nonces): any other bytes after a resume
// fail authentication, so a byte-exact plaintext with exit 0 after cuts on both sides shows it does.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type CuttingProxy, type FaultPlan, startCuttingProxy } from './helpers/cutting-proxy.js';
import { type RunResult, repoRoot, run, type ServerProcess } from './helpers/processes.js';
import { useRedisPair } from './helpers/redis-pair.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'edgepipe-sealed-resume-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const keyFile = join(work, 'key');
writeFileSync(keyFile, randomBytes(32).toString('hex'));
const FAST = ['--retry-base', '50ms', '--retry-cap', '500ms', '--stall-timeout', '15s', '--progress', 'json'];
const SIZE = 12 * MiB;
/** Cuts per side: each of the first connections that carries this many bytes is cut there. */
const CUTS = 3;
const CUT_EVERY = 2 * MiB + 12_345;

function edgepipe(args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'dist/cli/main.js'), ...args], {
    env: { EDGEPIPE_STATE_DIR: join(work, 'state'), ...env },
    timeoutMs: 90_000,
  });
}

/**
 * The first `CUTS` connections are each cut `CUT_EVERY` bytes in, in one direction (`up`: the sender's
 * upload; `down`: what the receiver reads). A connection that only carries a HEAD never gets that far, so
 * the cuts land in bodies, at a different place of the stream each time (each resumed request starts
 * where the last one broke).
 */
function cutsOf(direction: 'up' | 'down'): FaultPlan {
  return (index) =>
    index < CUTS + 2 ? (direction === 'up' ? { cutUpAt: CUT_EVERY } : { cutDownAt: CUT_EVERY }) : undefined;
}

/** The `resumes` of the last `--progress json` object a side printed. */
function resumesOf(result: RunResult): number {
  const last = result.stderr
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{"state"'))
    .pop();
  return last ? (JSON.parse(last) as { resumes: number }).resumes : -1;
}

describe('encrypted and framed transfers resume after cuts, on Redis with two instances', () => {
  const servers = useRedisPair();

  it.each([
    ['--key-file', ['--key-file', keyFile], {}],
    [
      '--passphrase (EDGEPIPE_PASSPHRASE)',
      ['--passphrase'],
      { EDGEPIPE_PASSPHRASE: 'resume me, same bytes' },
    ],
    ['--framed (the sender only: the receiver knows it by its Content-Type)', ['--framed'], {}],
  ] as const)(
    '%s: several cuts each way, byte-exact, exit 0 on both sides',
    async (name, flags, env) => {
      const data = randomBytes(SIZE);
      const tag = name.replace(/\W+/g, '');
      const input = join(work, `${tag}.in`);
      const output = join(work, `${tag}.out`);
      writeFileSync(input, data);
      const host = (server: ServerProcess) => ({ host: '127.0.0.1', port: Number(new URL(server.url).port) });
      const proxies: CuttingProxy[] = [
        await startCuttingProxy({ target: host(servers.a), plan: cutsOf('up') }),
        await startCuttingProxy({ target: host(servers.b), plan: cutsOf('down') }),
      ];
      try {
        const recvFlags = flags[0] === '--framed' ? [] : [...flags];
        const receiving = edgepipe(
          ['recv', `${proxies[1]!.url}/sealed/${tag}`, output, ...recvFlags, ...FAST],
          env,
        );
        await delay(300);
        const sent = await edgepipe(
          ['send', `${proxies[0]!.url}/sealed/${tag}`, input, ...flags, '--sha256', ...FAST],
          env,
        );
        const received = await receiving;
        const context = `send: ${sent.stderr}\nrecv: ${received.stderr}`;
        expect(sent.code, context).toBe(0);
        expect(received.code, context).toBe(0);
        expect(sha256(readFileSync(output)), context).toBe(sha256(data));
        expect(sent.stderr).toContain(`sha256 ${sha256(data)}`);
        // The cuts really happened, on both sides, and each side resumed (rather than starting over).
        expect(proxies[0]!.cuts, context).toBeGreaterThanOrEqual(2);
        expect(proxies[1]!.cuts, context).toBeGreaterThanOrEqual(2);
        expect(resumesOf(sent), context).toBeGreaterThanOrEqual(2);
        expect(resumesOf(received), context).toBeGreaterThanOrEqual(2);
      } finally {
        for (const proxy of proxies) await proxy.close();
        rmSync(input, { force: true });
        rmSync(output, { force: true });
      }
    },
    120_000,
  );
});
