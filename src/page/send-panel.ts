import { createSealer } from '../client/format/index.js';
import { headRequest, type PipeProbe, probeOf } from '../client/pipe-probe.js';
import type { PlainSource } from '../client/plain-source.js';
import { DEFAULT_RETRY } from '../client/retry-policy.js';
import { send } from '../client/send.js';
import { systemClock } from '../client/transfer-events.js';
import { plainEncoding, type SendEncoding } from '../client/wire-format.js';
import { sealedEncoding } from '../client/wire-formats.js';
import { byId } from './dom.js';
import { blobSource, zipSource } from './file-source.js';
import { AddressError, type PipeAddress, pipeAddress, receiveLink } from './pipe-address.js';
import { drawShareLink } from './share-link.js';
import { bindTransferForm } from './transfer-form.js';
import type { TransferView } from './transfer-view.js';
import { chooseUpload } from './upload-choice.js';
import { xhrFetch } from './xhr-fetch.js';

/** Without a byte for this long while bytes should flow, an attempt is dropped and resumed. */
const STALL_MS = 60_000;

/** What is sent: its source, and the headers that describe it to receivers. */
interface Outgoing {
  readonly source: PlainSource;
  readonly contentType: string;
  readonly filename: string | undefined;
}

/** The send form: one transfer at a time, cancelled by its button. */
export function bindSendPanel(): void {
  const mode = byId('send-mode');
  bindTransferForm(
    'send',
    (view, signal) => sendFromForm(view, mode, signal),
    () => {
      mode.textContent = '';
    },
  );
}

async function sendFromForm(view: TransferView, mode: HTMLElement, signal: AbortSignal): Promise<void> {
  const typed = byId<HTMLInputElement>('send-target').value;
  const receivers = Number(byId<HTMLInputElement>('send-n').value || '1');
  if (!Number.isInteger(receivers) || receivers < 1)
    throw new AddressError('Receivers must be a whole number, 1 or more.');
  const address = pipeAddress(typed, document.baseURI, {
    n: receivers,
    token: byId<HTMLInputElement>('token').value,
  });
  const outgoing = outgoingFromForm();
  drawShareLink(receiveLink(address, typed, location.href.split('#')[0]!));
  const passphrase = byId<HTMLInputElement>('send-passphrase').value;
  let encoding: SendEncoding = plainEncoding;
  if (passphrase) {
    view.say('Deriving the key from the passphrase...');
    encoding = sealedEncoding(await createSealer({ kind: 'passphrase', passphrase }));
  }
  const probe = await probeOnce(address, signal);
  const choice = chooseUpload(address.url, probe, passphrase !== '');
  mode.textContent = choice.label;
  // Progress of a Blob upload comes from the request itself; a streamed one counts as it reads.
  const wireTotal = encoding.wireLength(outgoing.source.length);
  const plainTotal = outgoing.source.length;
  const viaXhr = choice.mode.kind !== 'stream';
  // The bar from the start: a streamed upload's answer (and its "started") only comes once the body is sent.
  view.setTotal(plainTotal);
  const headers: Array<readonly [string, string]> = [...address.headers];
  // A sealed body carries its own Content-Type and names no file in the clear (as the CLI's).
  if (!passphrase) {
    headers.push(['Content-Type', outgoing.contentType]);
    if (outgoing.filename) headers.push(['Content-Disposition', contentDisposition(outgoing.filename)]);
  }
  const result = await send({
    url: address.url,
    headers,
    fetch: viaXhr
      ? xhrFetch((url, loaded) => {
          if (wireTotal === undefined || plainTotal === undefined) return;
          const wireAt = Number(url.searchParams.get('offset') ?? '0') + loaded;
          view.moved(Math.round((wireAt / Math.max(wireTotal, 1)) * plainTotal));
        })
      : fetch.bind(globalThis),
    retry: DEFAULT_RETRY,
    stallMs: STALL_MS,
    clock: systemClock,
    signal,
    ...(probe ? { knownProbe: probe } : {}),
    source: outgoing.source,
    encoding,
    upload: choice.mode,
    onEvent: (event) => {
      // A Blob upload's reading into its Blob is not its progress: its request reports that.
      if (viaXhr && event.type === 'progress') return;
      view.onEvent(event, 'send');
    },
  });
  if (plainTotal !== undefined) view.moved(plainTotal);
  view.say(`Sent: ${result.summary}`);
}

/** The files (one as it is, several as a ZIP) or else the text of the form. */
function outgoingFromForm(): Outgoing {
  const files = [...(byId<HTMLInputElement>('send-files').files ?? [])];
  if (files.length === 1) {
    const file = files[0]!;
    return {
      source: blobSource(file),
      contentType: file.type || 'application/octet-stream',
      filename: file.name,
    };
  }
  if (files.length > 1) {
    return {
      source: zipSource(files),
      contentType: 'application/zip',
      filename: `${files.length}-files.zip`,
    };
  }
  const text = byId<HTMLTextAreaElement>('send-text').value;
  if (text === '') throw new AddressError('Choose a file or type a text first.');
  return {
    source: blobSource(new Blob([text])),
    contentType: 'text/plain; charset=utf-8',
    filename: undefined,
  };
}

/** RFC 6266: an ASCII fallback beside the exact UTF-8 name (RFC 8187). */
function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

/** One `HEAD`, to choose the upload; when it fails, `send` probes (and retries) on its own. */
async function probeOnce(address: PipeAddress, signal: AbortSignal): Promise<PipeProbe | undefined> {
  try {
    const probe = probeOf(
      await headRequest({
        url: address.url,
        headers: address.headers,
        fetch: fetch.bind(globalThis),
        signal,
        clock: systemClock,
        retry: DEFAULT_RETRY,
      }),
    );
    return probe.edgepipe ? probe : undefined;
  } catch {
    signal.throwIfAborted();
    return undefined;
  }
}
