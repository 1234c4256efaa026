// The yardstick: the least a relay can do in Node. A PUT waits for (or finds) the GET on the same path and
// is piped straight into it; no protocol, no limits, no transcript. `node bench/raw-relay.js PORT`.
import { createServer } from 'node:http';

const waiting = new Map(); // path -> { req, res } of whichever side came first

function relay(sender, receiver) {
  const headers = {};
  if (sender.req.headers['content-length']) headers['content-length'] = sender.req.headers['content-length'];
  receiver.res.writeHead(200, headers);
  sender.req.pipe(receiver.res);
  sender.req.on('end', () => sender.res.end('done\n'));
}

const server = createServer({ requestTimeout: 0 }, (req, res) => {
  const path = req.url.split('?')[0];
  const side = req.method === 'GET' ? 'receiver' : 'sender';
  const peer = waiting.get(path);
  if (peer && peer.side !== side) {
    waiting.delete(path);
    if (side === 'sender') relay({ req, res }, peer);
    else relay(peer, { req, res });
  } else {
    waiting.set(path, { side, req, res });
  }
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`raw relay listening on ${server.address().port}`);
});
process.on('SIGINT', () => process.exit(0));
