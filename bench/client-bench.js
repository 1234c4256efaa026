// The client rows of `npm run bench`: the same GiB through one edgepipe pipe with curl at both ends, with
// `edgepipe send | edgepipe recv`, and with the client's encryption, side by side in each round. Each client
// runs under bash's `time`, so its own CPU (user + sys, children included) is measured as a user would.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timed } from './timed-command.js';

/**
 * The client modes compared: each gives the receiver's and the sender's command for a URL and a size.
 * @param {string} cli the edgepipe command (bin/edgepipe.js, as users run it)
 * @param {string} keyFile
 */
function modes(cli, keyFile) {
  const zeros = (bytes) => `head -c ${bytes} /dev/zero`;
  return [
    {
      name: 'curl → curl',
      receiver: (url) => `curl -sSf -o /dev/null '${url}'`,
      sender: (url, bytes) => `${zeros(bytes)} | curl -sSf -T - '${url}' > /dev/null`,
    },
    {
      name: 'edgepipe send → recv',
      receiver: (url) => `${cli} recv '${url}' - -q > /dev/null`,
      sender: (url, bytes) => `${zeros(bytes)} | ${cli} send '${url}' - -q`,
    },
    {
      name: 'edgepipe send → recv, --key-file (AES-256-GCM)',
      receiver: (url) => `${cli} recv '${url}' - -q --key-file ${keyFile} > /dev/null`,
      sender: (url, bytes) => `${zeros(bytes)} | ${cli} send '${url}' - -q --key-file ${keyFile}`,
    },
    {
      name: 'edgepipe send → recv, --passphrase (scrypt, then AES-256-GCM)',
      receiver: (url) => `EDGEPIPE_PASSPHRASE=bench ${cli} recv '${url}' - -q --passphrase > /dev/null`,
      sender: (url, bytes) =>
        `${zeros(bytes)} | EDGEPIPE_PASSPHRASE=bench ${cli} send '${url}' - -q --passphrase`,
    },
  ];
}

/**
 * Measures every client mode through `server` for `rounds` interleaved rounds of `gib` GiB.
 * @param {{ url: string; cpu: () => number }} server the broker (its URL and its process tree's CPU seconds)
 * @param {{ cli: string; rounds: number; gib: number; log: (line: string) => void }} options
 */
export async function measureClients(server, { cli, rounds, gib, log }) {
  const work = mkdtempSync(join(tmpdir(), 'edgepipe-bench-client-'));
  const keyFile = join(work, 'key');
  writeFileSync(keyFile, 'ab'.repeat(32));
  const all = modes(cli, keyFile);
  const bytes = Math.round(gib * 1024 ** 3);
  /** @type {Map<string, { mibs: number[]; clientCpu: number[]; serverCpu: number[] }>} */
  const results = new Map(all.map((m) => [m.name, { mibs: [], clientCpu: [], serverCpu: [] }]));
  for (let round = 0; round < rounds; round++) {
    // The order flips each round, so no mode always runs on a warmer (or more loaded) machine.
    const order = round % 2 === 0 ? all : [...all].reverse();
    for (const mode of order) {
      const url = `${server.url}/bench-client-${round}-${mode.name.length}-${order.indexOf(mode)}`;
      const serverBefore = server.cpu();
      const started = performance.now();
      const receiving = timed(mode.receiver(url)).then(({ cpu }) => cpu);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const [receiverCpu, senderCpu] = await Promise.all([
        receiving,
        timed(mode.sender(url, bytes)).then(({ cpu }) => cpu),
      ]);
      // The receiver's head start is not transfer time: the sender is what starts the clock for a user.
      const seconds = (performance.now() - started) / 1000 - 0.3;
      const r = /** @type {{ mibs: number[]; clientCpu: number[]; serverCpu: number[] }} */ (
        results.get(mode.name)
      );
      r.mibs.push(bytes / 1024 ** 2 / seconds);
      r.clientCpu.push((receiverCpu + senderCpu) / gib);
      r.serverCpu.push((server.cpu() - serverBefore) / gib);
      log(
        `client round ${round + 1}/${rounds} ${mode.name}: ${(bytes / 1024 ** 2 / seconds).toFixed(0)} MiB/s`,
      );
    }
  }
  return results;
}
