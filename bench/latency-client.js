// (b) of `npm run bench`, run as a process of its own (an outside observer, not the bench's event loop):
// `count` sequential 1 KiB transfers through `<base>`, receiver first, each timed from the receiver's
// request to its last byte. Prints the samples (ms) as one JSON array.
//   node bench/latency-client.js <recv base URL> <send base URL> <path prefix> <count>
// With the prefix `--echo`, each sample is one PUT of 1 KiB that comes back as its own answer (the echo
// Worker): the least a request through workerd costs, the floor under the Durable Object rows.
import { Agent, request } from 'node:http';

const [recvBase, sendBase, prefix, countText] = process.argv.slice(2);
const count = Number(countText);
const agent = new Agent({ keepAlive: true });
const body = Buffer.alloc(1024, 7);

function get(url) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
      });
      res.on('end', () =>
        res.statusCode === 200 && bytes === body.length
          ? resolve()
          : reject(new Error(`receiver: ${res.statusCode}, ${bytes} B`)),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function put(url) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, method: 'PUT', headers: { 'Content-Length': body.length } }, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function echo(url) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, method: 'PUT', headers: { 'Content-Length': body.length } }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
      });
      res.on('end', () => (bytes === body.length ? resolve() : reject(new Error(`echo: ${bytes} B`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const samples = [];
for (let i = 0; prefix === '--echo' && i < count; i++) {
  const started = performance.now();
  await echo(`${recvBase}/echo-${i}`);
  samples.push(performance.now() - started);
}
for (let i = 0; prefix !== '--echo' && i < count; i++) {
  const path = `${prefix}-${i}`;
  const started = performance.now();
  const received = get(`${recvBase}/${path}`);
  const sent = put(`${sendBase}/${path}`);
  await received;
  samples.push(performance.now() - started);
  await sent;
}
agent.destroy();
process.stdout.write(JSON.stringify(samples));
