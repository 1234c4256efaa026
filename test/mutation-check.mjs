#!/usr/bin/env node
// Mutation check: plants known bugs in a copy of the repository, one at a time, runs the tests that should
// catch each, and reports whether a test failed (killed) or all passed (survived). A survivor means a test
// cannot catch the bug it is named after.
//
//   npm run mutation-check                 every mutant
//   npm run mutation-check -- NAME...      only these (names from the table; --list prints them)
//   npm run mutation-check -- --no-baseline   skip the unmutated run of the named tests
//
// How it works: the working tree (tracked and untracked, not ignored files) is copied to a temp folder with
// `node_modules` linked, built once (`tsc -p tsconfig.build.json`) and the named tests run once unmutated:
// they must pass, or a kill would mean nothing. Then per mutant: `find` must occur exactly once in `file`
// (else the mutant is STALE and the run fails: the code moved and the table needs a new `find`), it is
// replaced, the compiled `dist/` twin of the file is rebuilt with esbuild when a named test starts real
// server processes from `dist/`, the named test files run (vitest, `--bail 1`), and both are restored.
//
// The table: one entry per bug, { name, why, file, find, replace, tests, grep? }.
//   - `find`/`replace`: exact text (not a pattern); keep `find` short but unique in the file.
//   - `tests`: test files that must catch it; `grep` (optional) narrows them to tests whose name matches.
// Verdicts: killed (a named test failed), survived (all passed), STALE (`find` not found once), ERROR (vitest
// failed without a failing test, e.g. it could not start).
// Exit code: 0 when every mutant was killed, 1 otherwise, 2 when the table or the baseline is broken.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** @typedef {{ name: string, why: string, file: string, find: string, replace: string, tests: string[], grep?: string }} Mutant */

/** @type {Mutant[]} */
const MUTANTS = [
  {
    name: 'x-piping-first-only',
    why: 'only the first of several X-Piping values reaches the receiver',
    file: 'src/routes/passthrough-headers.ts',
    find: "for (const value of xPiping) out.push(['X-Piping', value]);",
    replace: "for (const value of xPiping.slice(0, 1)) out.push(['X-Piping', value]);",
    tests: ['test/piping-compat.test.ts'],
  },
  {
    name: 'resume-at-head-refused',
    why: 'a receiver resuming exactly at the committed offset is refused (off by one)',
    file: 'src/broker/redis/resume-scripts.ts',
    find: 'if offset < from or offset > head then',
    replace: 'if offset < from or offset >= head then',
    tests: ['test/redis-resume.test.ts'],
  },
  {
    name: 'sender-resume-at-head-refused',
    why: 'a sender resuming exactly at the committed offset is refused (off by one)',
    file: 'src/broker/redis/resume-scripts.ts',
    find: "if offset > head then return {'err', 'offset', 0, head} end",
    replace: "if offset >= head then return {'err', 'offset', 0, head} end",
    tests: ['test/redis-resume.test.ts'],
  },
  {
    name: 'token-bucket-no-burst-cap',
    why: 'an idle client saves up tokens without limit and may then flood',
    file: 'src/access/client-limits.ts',
    find: 'state.tokens = Math.min(burst, state.tokens + ',
    replace: 'state.tokens = Math.max(0, state.tokens + ',
    tests: ['test/access.test.ts'],
  },
  {
    name: 'head-timeout-disabled',
    why: 'a half-sent request head is never answered (Node with headersTimeout 0)',
    file: 'src/adapter/node/http-listener.ts',
    find: 'headersTimeout: options.headersTimeoutMs,',
    replace: 'headersTimeout: 0,',
    tests: ['test/bad-input.test.ts'],
  },
  {
    name: 'head-check-every-30s',
    why: "Node's default check period: a half-sent head is dropped up to 30 s after the head timeout",
    file: 'src/adapter/node/http-listener.ts',
    find: 'connectionsCheckingInterval: Math.min(30_000, Math.max(50, options.headersTimeoutMs / 4)),',
    replace: 'connectionsCheckingInterval: 30_000,',
    tests: ['test/bad-input.test.ts'],
  },
  {
    name: 'client-errors-unanswered',
    why: 'a clientError listener that answers nothing: malformed requests hang instead of getting a 400',
    file: 'src/adapter/node/serve.ts',
    find: "server.once('error', reject);",
    replace: "server.on('clientError', () => {}); server.once('error', reject);",
    tests: ['test/bad-input.test.ts'],
  },
  {
    name: 'client-errors-cut',
    why: 'malformed requests are cut without the 400 that says why',
    file: 'src/adapter/node/serve.ts',
    find: "server.once('error', reject);",
    replace: "server.on('clientError', (_e, socket) => socket.destroy()); server.once('error', reject);",
    tests: ['test/e2e.test.ts'],
    grep: 'malformed',
  },
  {
    name: 'default-window-24mib',
    why: 'the in-memory default window is 24 MiB instead of 1 MiB',
    file: 'src/app.ts',
    find: 'windowBytes: config.broker.windowBytes ?? 1024 * 1024,',
    replace: 'windowBytes: config.broker.windowBytes ?? 24 * 1024 * 1024,',
    tests: ['test/app.test.ts', 'test/server-process.test.ts'],
  },
  {
    name: 'default-window-24mib-process',
    why: 'the same bug, caught by the real server process on loopback (window plus measured socket queues)',
    file: 'src/app.ts',
    find: 'windowBytes: config.broker.windowBytes ?? 1024 * 1024,',
    replace: 'windowBytes: config.broker.windowBytes ?? 24 * 1024 * 1024,',
    tests: ['test/server-process.test.ts'],
    grep: 'slow receiver',
  },
  {
    name: 'window-bound-doubled',
    why: 'the chunk window holds twice its configured bytes before pausing the sender',
    file: 'src/broker/memory/chunk-window.ts',
    find: 'return this.bufferedBytes <= this.options.windowBytes &&',
    replace: 'return this.bufferedBytes <= 2 * this.options.windowBytes &&',
    tests: ['test/chunk-window.test.ts', 'test/memory-broker.test.ts', 'test/app.test.ts'],
  },
  {
    name: 'sender-abort-silent',
    why: 'a sender that drops mid-body ends its receivers cleanly: a silent truncation',
    file: 'src/broker/memory/memory-broker.ts',
    find: 'this.failPipe(pipe, new SenderAbortedError(reason));',
    replace: 'void pipe.window?.end().catch(() => {}); this.forget(pipe);',
    tests: ['test/memory-broker.test.ts', 'test/e2e.test.ts'],
    grep: 'abort',
  },
  {
    name: 'receiver-abort-untold',
    why: 'one of n receivers drops and the sender is not told',
    file: 'src/broker/memory/memory-broker.ts',
    find: 'if (window.removeReader(slot.id)) {',
    replace: 'if (window.removeReader(slot.id) && false) {',
    tests: ['test/memory-broker.test.ts', 'test/e2e.test.ts'],
    grep: 'abort',
  },
  {
    name: 'upload-idle-timeout-ignored',
    why: 'an upload that stalls mid-body holds its pipe (and its receivers) far past idleTimeoutMs',
    file: 'src/routes/send.ts',
    find: 'idleMs: idleTimeoutMs,',
    replace: 'idleMs: idleTimeoutMs * 1000,',
    tests: ['test/limits.test.ts'],
  },
  {
    name: 'internal-paths-sendable',
    why: 'paths under /_/ (the server endpoints) can be sent to',
    file: 'src/routes/reserved-paths.ts',
    find: 'path.startsWith(INTERNAL_PREFIX)',
    replace: 'path === INTERNAL_PREFIX',
    tests: ['test/app.test.ts'],
  },
  {
    name: 'n-max-off-by-one',
    why: 'n = maxReceivers + 1 is accepted',
    file: 'src/routes/pipe-target.ts',
    find: 'if (n > maxReceivers) fail(',
    replace: 'if (n > maxReceivers + 1) fail(',
    tests: ['test/app.test.ts'],
  },
  {
    name: 'n-mismatch-ignored',
    why: 'a receiver whose n disagrees with the waiting party joins anyway',
    file: 'src/broker/memory/memory-broker.ts',
    find: 'if (pipe.receivers !== receivers) throw',
    replace: 'if (pipe.receivers !== receivers && false) throw',
    tests: ['test/app.test.ts', 'test/memory-broker.test.ts'],
  },
  {
    name: 'cors-origin-missing',
    why: 'transfer responses lack Access-Control-Allow-Origin (browsers cannot read them)',
    file: 'src/routes/cors.ts',
    find: "export const CORS_ORIGIN = { 'Access-Control-Allow-Origin': '*' } as const;",
    replace: 'export const CORS_ORIGIN = {} as const;',
    tests: ['test/app.test.ts'],
  },
  {
    name: 'html-served-as-html',
    why: 'a sender can serve text/html on the broker origin',
    file: 'src/routes/passthrough-headers.ts',
    find: "=== 'text/html' ?",
    replace: "=== 'text/htm' ?",
    tests: ['test/app.test.ts'],
  },
  {
    name: 'client-waiting-cap-off-by-one',
    why: 'a client may hold maxWaiting + 1 waiting requests',
    file: 'src/access/client-limits.ts',
    find: 'if (state.waiting >= this.limits.maxWaiting) {',
    replace: 'if (state.waiting > this.limits.maxWaiting) {',
    tests: ['test/access.test.ts'],
  },
  {
    name: 'declared-body-cap-off-by-one',
    why: 'a declared Content-Length of maxBodyBytes + 1 is accepted',
    file: 'src/routes/send.ts',
    find: 'Number(declared) > maxBodyBytes',
    replace: 'Number(declared) > maxBodyBytes + 1',
    tests: ['test/limits.test.ts'],
  },
];

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
if (args.includes('--list')) {
  for (const m of MUTANTS) console.log(`${m.name.padEnd(32)} ${m.why}`);
  process.exit(0);
}
const names = args.filter((a) => !a.startsWith('--'));
const unknown = names.filter((n) => !MUTANTS.some((m) => m.name === n));
if (unknown.length > 0) {
  console.error(`unknown mutant(s): ${unknown.join(', ')} (--list prints the table)`);
  process.exit(2);
}
const chosen = names.length > 0 ? MUTANTS.filter((m) => names.includes(m.name)) : MUTANTS;
const missing = [...new Set(chosen.flatMap((m) => [m.file, ...m.tests]))].filter(
  (f) => !existsSync(join(repo, f)),
);
if (missing.length > 0) {
  console.error(`the table names files that do not exist: ${missing.join(', ')}`);
  process.exit(2);
}

/** Runs a command in `cwd`, its output to ours only when `loud`; returns its exit code (null: killed). */
function sh(cwd, command, commandArgs, { loud = false, timeoutMs = 15 * 60_000 } = {}) {
  const result = spawnSync(command, commandArgs, {
    cwd,
    stdio: loud ? 'inherit' : 'pipe',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    maxBuffer: 256 * 1024 * 1024,
  });
  return { code: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

// The copy: what git would see in the working tree (so uncommitted edits to tests count), plus node_modules.
const work = mkdtempSync(join(tmpdir(), 'edgepipe-mutants-'));
const files = sh(repo, 'git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'])
  .output.split('\0')
  .filter((f) => f && existsSync(join(repo, f)));
for (const file of files) {
  mkdirSync(dirname(join(work, file)), { recursive: true });
  cpSync(join(repo, file), join(work, file));
}
symlinkSync(join(repo, 'node_modules'), join(work, 'node_modules'));
console.log(`copy of the working tree in ${work}`);

process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const built = sh(work, 'npx', ['tsc', '-p', 'tsconfig.build.json']);
if (built.code !== 0) {
  console.error(`build failed:\n${built.output}`);
  process.exit(2);
}

/** Whether a test file starts servers from `dist/` (then a mutant's compiled twin must change too). */
const usesDist = (test) => /spawnServer|spawnListening|dist\//.test(readFileSync(join(work, test), 'utf8'));

const vitest = (tests, grep) =>
  sh(work, 'npx', ['vitest', 'run', '--bail', '1', ...(grep ? ['-t', grep] : []), ...tests]);

if (!args.includes('--no-baseline')) {
  const groups = new Map();
  for (const m of chosen) {
    const key = m.grep ?? '';
    groups.set(key, [...new Set([...(groups.get(key) ?? []), ...m.tests])]);
  }
  for (const [grep, tests] of groups) {
    console.log(`baseline: ${tests.join(' ')}${grep ? ` -t ${grep}` : ''}`);
    const base = vitest(tests, grep);
    if (base.code !== 0 || !/\d+ passed/.test(base.output)) {
      console.error(`the unmutated tests fail; fix them first:\n${base.output.slice(-4000)}`);
      process.exit(2);
    }
  }
}

/** Compiles one source file to its `dist/` twin (the same ESM tsc emits, for a single file). */
function compileToDist(file) {
  const out = join(work, file.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'));
  const result = sh(work, 'npx', [
    'esbuild',
    file,
    '--format=esm',
    '--platform=node',
    '--target=es2022',
    '--log-level=error',
    `--outfile=${out}`,
  ]);
  if (result.code !== 0) throw new Error(`esbuild ${file}: ${result.output}`);
}

const rows = [];
for (const mutant of chosen) {
  const path = join(work, mutant.file);
  const original = readFileSync(path, 'utf8');
  const found = original.split(mutant.find).length - 1;
  if (found !== 1) {
    rows.push({ mutant, verdict: 'STALE', detail: `find occurs ${found} times in ${mutant.file}` });
    console.log(`${mutant.name}: STALE (find occurs ${found} times)`);
    continue;
  }
  const dist = mutant.tests.some(usesDist) && mutant.file.startsWith('src/');
  const distPath = join(work, mutant.file.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'));
  const distOriginal = dist ? readFileSync(distPath) : undefined;
  const started = Date.now();
  try {
    writeFileSync(path, original.replace(mutant.find, mutant.replace));
    if (dist) compileToDist(mutant.file);
    const result = vitest(mutant.tests, mutant.grep);
    const failed = /FAIL\s+(.+)/.exec(result.output);
    // A kill is a test that failed; vitest failing to start, or finding no tests, is not one.
    const verdict = result.code === 0 ? 'survived' : failed ? 'killed' : 'ERROR';
    rows.push({
      mutant,
      verdict,
      detail:
        result.code === 0
          ? 'every named test passed'
          : (failed?.[1]?.trim().slice(0, 100) ?? `exit ${result.code}`),
      seconds: Math.round((Date.now() - started) / 1000),
    });
  } finally {
    writeFileSync(path, original);
    if (distOriginal) writeFileSync(distPath, distOriginal);
  }
  const row = rows[rows.length - 1];
  console.log(`${mutant.name}: ${row.verdict} (${row.seconds} s) ${row.detail}`);
}

console.log('\n| mutant | verdict | first failing test |\n|---|---|---|');
for (const { mutant, verdict, detail } of rows) console.log(`| ${mutant.name} | ${verdict} | ${detail} |`);
process.exit(rows.every((r) => r.verdict === 'killed') ? 0 : 1);
