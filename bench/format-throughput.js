// Rough in-process throughput of the client's stream formats (src/client/format): seals BENCH_MIB MiB
// (default 256) fed in 1 MiB pieces, then opens the sealed pieces; frames and unframes the same. One core,
// no I/O. Run after a build: `npm run build && node bench/format-throughput.js`. A measurement, not a test.
import { createOpener, createSealer, createUnframer, framerFrom } from '../dist/client/format/index.js';

const MIB = Number(process.env.BENCH_MIB ?? 256);
const piece = new Uint8Array(2 ** 20).map((_, i) => i % 251);

function sourceOf(pieces) {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < pieces.length) controller.enqueue(pieces[i++]);
      else controller.close();
    },
  });
}

async function timed(label, bytes, readable, keep) {
  const started = performance.now();
  const out = [];
  let n = 0;
  for await (const chunk of readable) {
    n += chunk.byteLength;
    if (keep) out.push(chunk);
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${label}: ${(bytes / 2 ** 20 / seconds).toFixed(0)} MiB/s (${seconds.toFixed(2)} s, ${n} bytes out)`,
  );
  return out;
}

const plain = Array.from({ length: MIB }, () => piece);
const bytes = MIB * 2 ** 20;
const source = { kind: 'key', key: crypto.getRandomValues(new Uint8Array(32)) };
const sealer = await createSealer(source);
const sealed = await timed(`seal ${MIB} MiB`, bytes, sourceOf(plain).pipeThrough(sealer.sealFrom(0)), true);
await timed(`open ${MIB} MiB`, bytes, sourceOf(sealed).pipeThrough(createOpener(source)), false);
const framed = await timed(`frame ${MIB} MiB`, bytes, sourceOf(plain).pipeThrough(framerFrom(0)), true);
await timed(`unframe ${MIB} MiB`, bytes, sourceOf(framed).pipeThrough(createUnframer()), false);

const passphrase = { kind: 'passphrase', passphrase: 'correct horse battery staple' };
const started = performance.now();
await createSealer(passphrase);
console.log(`scrypt at the default 2^18: ${((performance.now() - started) / 1000).toFixed(2)} s`);
