import { createServer, type Socket } from 'node:net';
import { type Command, Option } from 'commander';
import { TransferError, UsageError } from '../client/errors.js';
import { systemClock } from '../client/transfer-events.js';
import { connectOne } from '../client/tunnel/connect.js';
import { expose } from '../client/tunnel/expose.js';
import type { TunnelSettings, TunnelTransport } from '../client/tunnel/tunnel-connection.js';
import type { TunnelEvent } from '../client/tunnel/tunnel-events.js';
import { tunnelKeys } from '../client/tunnel/tunnel-keys.js';
import { probeTunnel } from '../client/tunnel/tunnel-probe.js';
import { pipePathOf } from '../routes/pipe-target.js';
import { clientFetch } from './client-fetch.js';
import { keyOf } from './format-choice.js';
import { nodeChunkCipher } from './node-chunk-cipher.js';
import { socketConnection, socketDialer, stdioConnection } from './node-local-connection.js';
import { describeAddress, socketAddressOf } from './socket-address.js';
import { durationMs, requestHeaders, retryOf, sizeBytes, targetUrl } from './transfer-options.js';
import type { TransferIo } from './transfer-outcome.js';

/** The flags `expose` and `connect` share. */
interface TunnelFlags {
  readonly server?: string;
  readonly token?: string;
  readonly header?: string[];
  readonly passphrase?: boolean;
  readonly keyFile?: string;
  readonly heartbeat?: string;
  readonly retryBase?: string;
  readonly retryCap?: string;
  readonly retryFor?: string;
  readonly replayBuffer?: string;
  readonly quiet?: boolean;
}

interface ExposeFlags extends TunnelFlags {
  readonly to: string;
  readonly maxConnections?: string;
}

interface ConnectFlags extends TunnelFlags {
  readonly listen?: string;
  readonly stdio?: boolean;
}

/** How long `connect --stdio` may take to finish its connection after a SIGHUP before it dies of it. */
const HANGUP_GRACE_MS = 5_000;

/**
 * ssh sends its ProxyCommand SIGHUP as it exits, just after writing its last bytes (its disconnect) and closing
 * the pipes (sshconnect.c, ssh_kill_proxy_command). Dying of it at once would drop those bytes and reset the
 * service's end: every ssh session would end as a failure. So finish the close, and die of the hangup only if
 * that takes longer than HANGUP_GRACE_MS (the listener gone, the signal's default action applies again).
 * Returns the function that removes the listener once the connection has ended.
 */
function finishBeforeHangup(): () => void {
  const onHangup = () => {
    setTimeout(() => process.kill(process.pid, 'SIGHUP'), HANGUP_GRACE_MS).unref();
  };
  process.once('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}

/** Default heartbeat: well inside the 30 s after which the strictest NATs forget an idle mapping. */
const DEFAULT_HEARTBEAT_MS = 15_000;
/** Default bytes kept per direction for a resume (on a server that resumes). */
const DEFAULT_REPLAY_BYTES = 16 * 1024 * 1024;

function addTunnelOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--server <url>', 'the broker, for a <name> given as a path').env('EDGEPIPE_SERVER'),
    )
    .addOption(new Option('--token <token>', 'send Authorization: Bearer <token>').env('EDGEPIPE_TOKEN'))
    .option('--header <line>', "an extra request header, 'Name: value' (repeatable)", collect, [])
    .option('--passphrase', 'encrypt end to end with a passphrase (EDGEPIPE_PASSPHRASE, else asked)')
    .option('--key-file <file>', 'encrypt end to end with a 32-byte key from this file')
    .option(
      '--heartbeat <duration>',
      'send a heartbeat this often on idle pipes; a peer silent twice as long is dead (15s)',
    )
    .option('--retry-base <duration>', 'first backoff step (500ms)')
    .option('--retry-cap <duration>', 'largest backoff step (30s)')
    .option('--retry-for <duration>', "a connection's pipes give up after this long without progress (10m)")
    .option(
      '--replay-buffer <size>',
      'bytes kept per direction to resume from, on a broker that resumes (16MiB)',
    )
    .option('-q, --quiet', 'no connection log, errors only');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Adds `edgepipe expose` and `edgepipe connect` to `program`. */
export function addTunnelCommands(program: Command, io: TransferIo): void {
  addTunnelOptions(
    program
      .command('expose')
      .description('make a local TCP or Unix socket service reachable through the broker under <name>')
      .argument(
        '<name>',
        'the tunnel: a path on --server, or a full URL (a signed --tunnel URL works as it is)',
      )
      .requiredOption('--to <address>', 'the service: host:port, a port, unix:/path or \\\\.\\pipe\\name'),
  )
    .option('--max-connections <n>', 'connections carried at once; more are reset (256)')
    .action(async (name: string, flags: ExposeFlags) => {
      await io.run(() => runExpose(name, flags, io));
    });
  addTunnelOptions(
    program
      .command('connect')
      .description('carry local connections to the service exposed under <name>')
      .argument('<name>', 'the tunnel: a path on --server, or a full URL')
      .option(
        '--listen <address>',
        'accept connections here: host:port, a port, unix:/path or \\\\.\\pipe\\name',
      )
      .option(
        '--stdio',
        "carry one connection over stdin/stdout (ssh -o ProxyCommand='edgepipe connect <name> --stdio')",
      ),
  ).action(async (name: string, flags: ConnectFlags) => {
    await io.run(() => runConnect(name, flags, io));
  });
}

/** The settings both commands build from their flags (probing the server and deriving the keys once). */
async function settingsOf(
  name: string,
  flags: TunnelFlags,
  io: TransferIo,
  signal: AbortSignal,
  forever: boolean,
  onEvent: (event: TunnelEvent) => void,
): Promise<TunnelSettings> {
  const namespace = targetUrl(name, flags.server, undefined);
  if (namespace.searchParams.has('n')) throw new UsageError("a tunnel's pipes are one to one: drop ?n=");
  const heartbeatMs = durationMs(flags.heartbeat, DEFAULT_HEARTBEAT_MS, '--heartbeat');
  if (heartbeatMs < 100) throw new UsageError('--heartbeat should be at least 100ms');
  const retry = retryOf(flags as Parameters<typeof retryOf>[0]);
  const transport: TunnelTransport = {
    headers: requestHeaders(flags as Parameters<typeof requestHeaders>[0]),
    // Chunks as they come: the records are cut from them in place, and joining them first was a copy of
    // every byte (about a fifth of the exposing side's CPU per GiB).
    fetch: clientFetch({ joinChunks: false }),
    retry,
    clock: systemClock,
  };
  const key = await keyOf(flags, io, false);
  const [probe, keys] = await Promise.all([
    probeTunnel(namespace, forever ? { ...transport, retry: { ...retry, budgetMs: 0 } } : transport, signal),
    key ? tunnelKeys(key, pipePathOf(namespace), nodeChunkCipher) : undefined,
  ]);
  return {
    namespace,
    transport,
    probe,
    keys,
    heartbeatMs,
    replayBytes: sizeBytes(flags.replayBuffer, DEFAULT_REPLAY_BYTES, '--replay-buffer'),
    onEvent,
  };
}

/** Connection log lines on stderr (one per event), unless quiet. */
function logger(io: TransferIo, quiet: boolean, what: string): (event: TunnelEvent) => void {
  return (event) => {
    if (quiet && event.type !== 'retrying') return;
    const line = lineOf(event, what);
    if (line) io.stderr(`edgepipe: ${line}\n`);
  };
}

function lineOf(event: TunnelEvent, what: string): string | undefined {
  switch (event.type) {
    case 'listening':
      return event.reconnects === 0 ? `${what}` : `${what} again (reconnected ${event.reconnects} times)`;
    case 'retrying':
      return `the broker: ${event.reason}; again in ${(event.inMs / 1000).toFixed(1)} s`;
    case 'opened':
      return `connection ${event.id.slice(0, 8)} open (${event.setupMs} ms)`;
    case 'closed':
      return `connection ${event.id.slice(0, 8)} ${event.how}: ${event.reason} (${event.sent} bytes sent, ${event.received} received)`;
  }
}

/** The tunnel's name for a log line: a URL's path only (its query may hold a signature). */
function shown(name: string): string {
  return /^https?:\/\//i.test(name) ? new URL(name).pathname : name;
}

async function runExpose(name: string, flags: ExposeFlags, io: TransferIo): Promise<void> {
  const to = socketAddressOf(flags.to, '--to');
  const maxConnections = Number(flags.maxConnections ?? '256');
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new UsageError(`--max-connections should be a whole number above 0, not '${flags.maxConnections}'`);
  }
  const signal = io.interruptSignal();
  const log = logger(io, flags.quiet === true, `exposing ${describeAddress(to)} as ${shown(name)}`);
  const settings = await settingsOf(name, flags, io, signal, true, log);
  try {
    await expose({ ...settings, dial: socketDialer(to), maxConnections, signal });
  } catch (error) {
    if (!signal.aborted) throw error;
  }
}

async function runConnect(name: string, flags: ConnectFlags, io: TransferIo): Promise<void> {
  if (Boolean(flags.listen) === Boolean(flags.stdio))
    throw new UsageError('give exactly one of --listen and --stdio');
  const signal = io.interruptSignal();
  if (flags.stdio) {
    // ssh shows a ProxyCommand's stderr: only errors, unless asked.
    const settings = await settingsOf(name, flags, io, signal, false, logger(io, true, ''));
    let resetReason: string | undefined;
    const local = stdioConnection(io.stdin, io.stdout, (reason) => {
      resetReason = reason;
    });
    const stopFinishing = finishBeforeHangup();
    const end = await connectOne(settings, local).finally(stopFinishing);
    // A reset or a refusal came from the other side (6); a connection that failed (the peer silent, the
    // broker out of reach, a stream that did not verify) gave up (4).
    if (end.how === 'reset' || end.how === 'refused')
      throw new TransferError('peer-aborted', resetReason ?? end.reason);
    if (end.how === 'failed') throw new TransferError('gave-up', end.reason);
    return;
  }
  const listen = socketAddressOf(flags.listen!, '--listen');
  const log = logger(io, flags.quiet === true, '');
  const settings = await settingsOf(name, flags, io, signal, false, log);
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    void connectOne(settings, socketConnection(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (listen.kind === 'tcp') server.listen(listen.port, listen.host, resolve);
    else server.listen(listen.path, resolve);
  });
  if (flags.quiet !== true)
    io.stderr(`edgepipe: listening on ${describeAddress(listen)} for ${shown(name)}\n`);
  await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
