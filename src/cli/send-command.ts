import { realpathSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { StreamDigest } from '../client/digest.js';
import { IntegrityError, TransferError } from '../client/errors.js';
import { type PlainSource, ReplayBuffer } from '../client/plain-source.js';
import { send } from '../client/send.js';
import type { SendOptions } from '../client/send-options.js';
import { type FileIdentity, fileSource, identityOf } from './file-source.js';
import { type KeyFlags, keyOf, sendEncodingFor } from './format-choice.js';
import {
  addCommonTransferOptions,
  type CommonTransferFlags,
  expectedDigest,
  requestHeaders,
  sizeBytes,
  targetUrl,
  transferBasics,
} from './transfer-options.js';
import { finishTransfer, type TransferIo } from './transfer-outcome.js';
import { stateDir, TransferState } from './transfer-state.js';
import { webStreamOf } from './web-stream-of.js';

/** The flags of `edgepipe send`. */
export interface SendFlags extends CommonTransferFlags {
  readonly contentType?: string;
  readonly filename?: string;
  readonly replayBuffer?: string;
  readonly framed?: boolean;
}

/** What a killed `send` of a file leaves for the next run with the same arguments. */
interface SavedSend {
  readonly file: string;
  readonly identity: FileIdentity;
  /** The sealed or framed stream's header, so a restart re-sends byte-identical wire bytes. */
  readonly header?: string;
}

/**
 * Default replay buffer for stdin: above what the broker may not have committed when a connection breaks
 * (the client's and the server's socket buffers, a few MiB each on loopback, plus the frames in flight).
 */
const DEFAULT_REPLAY_BYTES = 64 * 1024 * 1024;

/** Adds `edgepipe send` to `program`. */
export function addSendCommand(program: Command, io: TransferIo): void {
  addCommonTransferOptions(
    program
      .command('send')
      .description('send a file or stdin through a pipe; retries, resumes and can encrypt end to end')
      .argument('<target>', 'the pipe: a full URL (a signed one works as it is) or a path on --server')
      .argument('[file]', 'the file to send; - or nothing for stdin'),
  )
    .option('--content-type <type>', 'the Content-Type receivers get')
    .option('--filename <name>', "the file name receivers get (Content-Disposition; default: the file's own)")
    .option('--replay-buffer <size>', 'how much of stdin is kept to resume from (64MiB)')
    .option(
      '--framed',
      'frame the body, so a receiver tells a cut body from a whole one (edgepipe recv only)',
    )
    .action(async (target: string, file: string | undefined, flags: SendFlags) => {
      await io.run(() => runSend(target, file, flags, io));
    });
}

async function runSend(
  target: string,
  file: string | undefined,
  flags: SendFlags,
  io: TransferIo,
): Promise<void> {
  const url = targetUrl(target, flags.server, flags.n);
  const headers = requestHeaders(flags);
  const fromFile = file !== undefined && file !== '-';
  const encrypted = Boolean(flags.passphrase || flags.keyFile);
  if (flags.contentType) headers.push(['Content-Type', flags.contentType]);
  // A sealed body names no file in the clear unless asked to.
  const filename = flags.filename ?? (fromFile && !encrypted ? basename(file) : undefined);
  if (filename)
    headers.push(['Content-Disposition', `attachment; filename="${filename.replace(/["\\\r\n]/g, '_')}"`]);
  const expected = expectedDigest(flags);
  const digest = flags.sha256 || expected ? new StreamDigest() : undefined;
  const key = await keyOf(flags as KeyFlags, io, true);

  let source: PlainSource;
  let continuing: SendOptions['continuing'];
  let state: TransferState<SavedSend> | undefined;
  let encoding: SendOptions['encoding'];
  if (fromFile) {
    const path = realpathSync(file);
    const identity = identityOf(path);
    source = fileSource(path, identity);
    state = new TransferState<SavedSend>(stateDir(io.env), 'send', url);
    const saved = flags.resume ? state.load() : undefined;
    const chosen = await sendEncodingFor(key, flags.framed === true, undefined);
    encoding = chosen.encoding;
    if (saved && saved.file === path) {
      // The pipe may still hold an earlier run's transfer: continued with that run's bytes and header.
      const earlier = await sendEncodingFor(key, flags.framed === true, saved.header);
      continuing = { source: fileSource(path, saved.identity), encoding: earlier.encoding };
      if (saved.identity.size !== identity.size || saved.identity.mtimeMs !== identity.mtimeMs) {
        continuing = {
          ...continuing,
          changed: new IntegrityError(
            `${path} changed since an interrupted transfer of it; refusing to resume with other bytes (--no-resume starts over)`,
          ),
        };
      }
    }
    state.save({ file: path, identity, ...(chosen.header ? { header: chosen.header } : {}) });
  } else {
    const stdin = webStreamOf(io.stdin);
    source = new ReplayBuffer(stdin, sizeBytes(flags.replayBuffer, DEFAULT_REPLAY_BYTES, '--replay-buffer'));
    encoding = (await sendEncodingFor(key, flags.framed === true, undefined)).encoding;
  }

  const { options, progress } = transferBasics(flags, io, url, headers, digest);
  try {
    const result = await send({
      ...options,
      source,
      encoding,
      ...(continuing ? { continuing } : {}),
    });
    progress.finish(result.summary);
    finishTransfer(io, digest, expected, flags.quiet === true);
    state?.clear();
  } catch (error) {
    progress.finish(error instanceof TransferError ? `failed: ${error.message}` : 'failed');
    // What was interrupted or given up on stays resumable by a second run; anything final is forgotten.
    if (error instanceof TransferError && error.code !== 'gave-up') state?.clear();
    throw error;
  }
}
