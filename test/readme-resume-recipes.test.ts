import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESUMABLE_HEADER } from '../src/protocol/resumable.js';
import { run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

/**
 * The README's two ways for a curl sender to resume, run as written (bash, curl, tail, awk) against a real
 * server on Redis: a receiver must get the file byte-exact either way. The off-by-one the README once had
 * (`tail -c +N` instead of `+N+1`) corrupted the file from the offset on and exited 0.
 */

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'edgepipe-recipes-'));

/** The README's recipes, with the URL and file as variables. */
const RECIPES = {
  'whole file again at offset 0': `curl -sS -H '${RESUMABLE_HEADER}: 1' -T "$FILE" "$URL?offset=0"`,
  'the rest from the committed offset': [
    `off=$(curl -sI "$URL" | tr -d '\\r' | awk 'tolower($1) == "upload-offset:" { print $2 }')`,
    `tail -c +$((off + 1)) "$FILE" |`,
    `  curl -sS -H '${RESUMABLE_HEADER}: 1' -T - "$URL?offset=$off"`,
  ].join('\n'),
} as const;

let redis: TestRedis;
let server: ServerProcess;

beforeAll(async () => {
  redis = await startTestRedis();
  server = await spawnServer(['--redis', redis.url]);
});
afterAll(async () => {
  server?.kill();
  await redis?.stop();
});

describe("the README's sender resume recipes", () => {
  for (const [name, recipe] of Object.entries(RECIPES)) {
    it(`${name}: the receiver gets the file byte-exact`, async () => {
      const data = randomBytes(6 * MiB);
      const file = join(work, `${name.replaceAll(' ', '-')}.bin`);
      writeFileSync(file, data);
      const url = `${server.url}/recipes/${randomBytes(4).toString('hex')}`;

      const receiving = fetch(url).then(async (response) => new Uint8Array(await response.arrayBuffer()));
      // A declared curl sender that dies after part of the file.
      const sender = spawn('curl', ['-sS', '-T', '-', '-H', `${RESUMABLE_HEADER}: 1`, url], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      sender.stdin.on('error', () => {});
      const exited = new Promise<void>((resolve) => sender.once('exit', () => resolve()));
      sender.stdin.write(data.subarray(0, 2 * MiB + 12_345));
      // Kill once the broker holds some of it, so the resume has something to skip.
      for (let tries = 0; ; tries++) {
        const head = await fetch(url, { method: 'HEAD' });
        if (Number(head.headers.get('upload-offset') ?? 0) > 0) break;
        if (tries > 500) throw new Error('the upload never reached the broker');
        await delay(10);
      }
      sender.kill('SIGKILL');
      await exited;
      for (let tries = 0; ; tries++) {
        const head = await fetch(url, { method: 'HEAD' });
        if (head.headers.get('x-edgepipe-sender') === 'dropped') break;
        if (tries > 1000) throw new Error('the sender was never seen as dropped');
        await delay(10);
      }

      const script = `URL='${url}'\nFILE='${file}'\n${recipe}`;
      const resumed = await run('bash', ['-euo', 'pipefail', '-c', script], { timeoutMs: 30_000 });
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout.toString()).toContain('Resuming the transfer at byte');
      expect(sha256(await receiving)).toBe(sha256(data));
    });
  }
});
