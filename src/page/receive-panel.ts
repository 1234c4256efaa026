import { decodingFor } from '../client/decoding-choice.js';
import type { KeySource } from '../client/format/index.js';
import { type ReceivedMeta, receive } from '../client/receive.js';
import { DEFAULT_RETRY } from '../client/retry-policy.js';
import { systemClock } from '../client/transfer-events.js';
import { BlobSink } from './blob-sink.js';
import { byId } from './dom.js';
import { pipeAddress } from './pipe-address.js';
import { bindTransferForm } from './transfer-form.js';
import type { TransferView } from './transfer-view.js';

/** A text up to this size is shown in the page; anything else is saved. */
const INLINE_TEXT_BYTES = 1024 * 1024;

const STALL_MS = 60_000;

/** The receive form: one transfer at a time, cancelled by its button. */
export function bindReceivePanel(): void {
  bindTransferForm('recv', receiveFromForm, () => {
    byId('recv-result').hidden = true;
  });
}

async function receiveFromForm(view: TransferView, signal: AbortSignal): Promise<void> {
  const typed = byId<HTMLInputElement>('recv-target').value;
  const address = pipeAddress(typed, document.baseURI, { token: byId<HTMLInputElement>('token').value });
  const passphrase = byId<HTMLInputElement>('recv-passphrase').value;
  const key: KeySource | undefined = passphrase ? { kind: 'passphrase', passphrase } : undefined;
  const sink = new BlobSink();
  let sealed = false;
  const result = await receive({
    url: address.url,
    headers: address.headers,
    fetch: fetch.bind(globalThis),
    retry: DEFAULT_RETRY,
    stallMs: STALL_MS,
    clock: systemClock,
    signal,
    onEvent: (event) => view.onEvent(event, 'receive'),
    begin: async (meta) => {
      const decoding = decodingFor(key, meta.contentType, { askForKey: 'enter its passphrase' });
      sealed = key !== undefined;
      if (sealed) view.say('Deriving the key from the passphrase...');
      return { sink, decoding };
    },
  });
  view.moved(result.plainBytes);
  const type = sealed ? 'application/octet-stream' : (result.meta.contentType ?? 'application/octet-stream');
  const blob = sink.result(type);
  const name = filenameOf(result.meta) ?? lastSegment(address.url);
  await showResult(blob, name);
  view.say(`Received ${name} (${result.plainBytes} bytes).`);
}

/** A short text is shown; anything else is offered as a download and saved at once. */
async function showResult(blob: Blob, name: string): Promise<void> {
  const box = byId('recv-result');
  const text = byId<HTMLPreElement>('recv-text');
  const link = byId<HTMLAnchorElement>('recv-save');
  const old = link.href;
  if (old.startsWith('blob:')) URL.revokeObjectURL(old);
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.textContent = `Save ${name}`;
  box.hidden = false;
  if (blob.type.startsWith('text/') && blob.size <= INLINE_TEXT_BYTES) {
    text.hidden = false;
    text.textContent = await blob.text();
    return;
  }
  text.hidden = true;
  link.click();
}

/** The sender's file name, from `filename*` (RFC 8187) or `filename` of its Content-Disposition. */
export function filenameOf(meta: ReceivedMeta): string | undefined {
  const disposition = meta.contentDisposition ?? '';
  const extended = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  if (extended) {
    try {
      return safeName(decodeURIComponent(extended[1]!.trim()));
    } catch {
      // fall through to the plain parameter
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))/i.exec(disposition);
  const raw = plain?.[1]?.replace(/\\(.)/g, '$1') ?? plain?.[2]?.trim();
  if (!raw) return undefined;
  try {
    return safeName(decodeURIComponent(raw));
  } catch {
    return safeName(raw);
  }
}

/** A name without directories: the browser saves under its download folder only. */
function safeName(name: string): string | undefined {
  const base = name.split(/[\\/]/).pop()?.trim();
  return base ? base : undefined;
}

function lastSegment(url: URL): string {
  const segments = url.pathname.split('/').filter(Boolean);
  return decodeURIComponent(segments[segments.length - 1] ?? 'received');
}
