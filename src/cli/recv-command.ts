import { createReadStream, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { StreamDigest } from '../client/digest.js';
import { TransferError, UsageError } from '../client/errors.js';
import { type ReceivedMeta, type ReceiveOptions, receive } from '../client/receive.js';
import { type KeyFlags, keyOf, receiveDecodingFor } from './format-choice.js';
import { type FileSink, fileSink, streamSink } from './output-sink.js';
import {
  addCommonTransferOptions,
  type CommonTransferFlags,
  expectedDigest,
  requestHeaders,
  targetUrl,
  transferBasics,
} from './transfer-options.js';
import { finishTransfer, type TransferIo } from './transfer-outcome.js';
import { stateDir, TransferState } from './transfer-state.js';

/** The flags of `edgepipe recv`. */
export interface RecvFlags extends CommonTransferFlags {
  /** `-O`: name the output after the sender's filename. */
  readonly O?: boolean;
}

/** What a killed `recv` into a file leaves for the next run with the same arguments. */
interface SavedRecv {
  readonly output: string;
  readonly meta: ReceivedMeta;
  /** The sealed or framed stream's header (base64), once it arrived. */
  readonly header?: string;
}

/** Adds `edgepipe recv` to `program`. */
export function addRecvCommand(program: Command, io: TransferIo): void {
  addCommonTransferOptions(
    program
      .command('recv')
      .description('receive from a pipe into a file or stdout; retries, resumes, checks and decrypts')
      .argument('<target>', 'the pipe: a full URL (a signed one works as it is) or a path on --server')
      .argument('[file]', 'where to write; - or nothing for stdout'),
  )
    .option('-O', "name the output after the sender's filename (Content-Disposition)")
    .action(async (target: string, file: string | undefined, flags: RecvFlags) => {
      await io.run(() => runRecv(target, file, flags, io));
    });
}

async function runRecv(
  target: string,
  file: string | undefined,
  flags: RecvFlags,
  io: TransferIo,
): Promise<void> {
  const url = targetUrl(target, flags.server, flags.n);
  if (flags.O && file !== undefined) throw new UsageError('give either -O or an output file, not both');
  const toStdout = !flags.O && (file === undefined || file === '-');
  const expected = expectedDigest(flags);
  const digest = flags.sha256 || expected ? new StreamDigest() : undefined;
  const key = await keyOf(flags as KeyFlags, io, false);
  const state = toStdout ? undefined : new TransferState<SavedRecv>(stateDir(io.env), 'recv', url);
  const saved = flags.resume ? state?.load() : undefined;
  let sink: FileSink | undefined;
  let continuing: ReceiveOptions['continuing'];
  if (saved && (file === undefined || resolve(file) === saved.output)) {
    const decoding = receiveDecodingFor(key, saved.meta.contentType, saved.header);
    // What the file holds for sure: a framed or sealed body continues at a whole chunk.
    // No file yet: killed between saving the state and creating it. It still holds a place at byte 0.
    const size = statSync(saved.output, { throwIfNoEntry: false })?.size ?? 0;
    const keep = decoding.wholePlain(size);
    if (digest) await digestFile(saved.output, keep, digest);
    sink = await fileSink(saved.output, keep);
    continuing = { plainWritten: keep, decoding, sink, meta: saved.meta };
    if (!flags.quiet) io.stderr(`edgepipe: continuing ${saved.output} at byte ${keep}\n`);
  }

  const { options, progress } = transferBasics(flags, io, url, requestHeaders(flags), digest);
  try {
    await receive({
      ...options,
      ...(continuing ? { continuing } : {}),
      begin: async (meta) => {
        const output = toStdout ? undefined : resolve(flags.O ? outputNameOf(meta) : file!);
        const save = (header: Uint8Array | undefined) => {
          if (output) state?.save({ output, meta, ...(header ? { header: base64(header) } : {}) });
        };
        const decoding = receiveDecodingFor(key, meta.contentType, undefined, save);
        save(undefined);
        if (output) sink = await fileSink(output, 0);
        return { sink: sink ?? streamSink(io.stdout), decoding };
      },
    });
    await sink?.close();
    progress.finish('received everything');
    finishTransfer(io, digest, expected, flags.quiet === true);
    state?.clear();
  } catch (error) {
    await sink?.close().catch(() => {});
    progress.finish(error instanceof TransferError ? `failed: ${error.message}` : 'failed');
    if (error instanceof TransferError && error.code !== 'gave-up') state?.clear();
    throw error;
  }
}

/** `-O`: the sender's filename, reduced to a plain name in the current directory. */
function outputNameOf(meta: ReceivedMeta): string {
  const disposition = meta.contentDisposition ?? '';
  const match = /filename\*=UTF-8''([^;]+)/i.exec(disposition) ?? /filename="?([^";]+)"?/i.exec(disposition);
  let name = match ? match[1]! : '';
  try {
    name = decodeURIComponent(name);
  } catch {
    // A name that is not percent-encoding is taken as it is.
  }
  name = [...basename(name.replace(/\\/g, '/'))].filter((c) => c.charCodeAt(0) >= 0x20).join('');
  if (!name || name === '.' || name === '..') {
    throw new UsageError(
      '-O: the sender gave no filename (Content-Disposition); name the output file instead',
    );
  }
  return name;
}

async function digestFile(path: string, length: number, digest: StreamDigest): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1 }))
    digest.update(chunk as Uint8Array);
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}
