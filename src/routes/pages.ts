import { VERSION } from '../version.js';

/** How the server admits transfers (`auth.mode`); `/help` writes its commands for it. */
export type HelpMode = 'open' | 'signed' | 'token';

/** What `/help` says first in each mode: how to get URLs (signed) or a token (token) that work here. */
function helpPreface(baseUrl: string, mode: HelpMode): string {
  if (mode === 'signed') {
    return `This server only serves signed URLs (auth.mode signed). Whoever holds its secret makes them:
SEND_URL=$(npx edgepipe sign /mypath --send --url ${baseUrl})
RECV_URL=$(npx edgepipe sign /mypath --recv --url ${baseUrl})
(add --ttl 3600 for an hour, --n 3 for three receivers; the secret is EDGEPIPE_SECRETS)

`;
  }
  if (mode === 'token') {
    return `This server needs a bearer token (auth.mode token). Ask whoever runs it for one, then:
export EDGEPIPE_TOKEN='<your token>'

`;
  }
  return '';
}

/**
 * `/help`: curl usage written with this server's own URL, so it can be copied as it is; in signed and token
 * mode the commands carry the signed URLs or the token those modes ask for.
 */
export function helpText(baseUrl: string, mode: HelpMode = 'open'): string {
  const curl = mode === 'token' ? 'curl -H "Authorization: Bearer $EDGEPIPE_TOKEN"' : 'curl';
  const signed = mode === 'signed';
  const recv = signed ? '"$RECV_URL"' : `${baseUrl}/mypath`;
  const send = signed ? '"$SEND_URL"' : `${baseUrl}/mypath`;
  const threeReceivers = signed
    ? `# Send to 3 receivers (sign both URLs with --n 3; each receiver runs: curl "$RECV_URL")
${curl} -T myfile "$SEND_URL"`
    : `# Send to 3 receivers (each runs: ${curl} '${baseUrl}/mypath?n=3')
${curl} -T myfile '${baseUrl}/mypath?n=3'`;
  return `edgepipe ${VERSION}: stream data between any two hosts that can reach this server over HTTP.

${helpPreface(baseUrl, mode)}======= Receive =======
${curl} ${recv}

======= Send =======
# Send a file
${curl} -T myfile ${send}

# Send a text
echo 'hello!' | ${curl} -T - ${send}

# Send a directory (tar.gz)
tar zfcp - ./mydir | ${curl} -T - ${send}

${threeReceivers}

# Upload from a form field (the first part is sent)
${curl} -F myfile=@myfile ${send}

# Encryption
## Send
cat myfile | openssl aes-256-cbc -pbkdf2 | ${curl} -T - ${send}
## Receive
${curl} ${recv} | openssl aes-256-cbc -pbkdf2 -d

Either side may come first; the first waits for the other.
`;
}

const STYLE = `body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
input,textarea,button{font:inherit}textarea{width:100%;box-sizing:border-box}code{background:#eee;padding:0 .2em}
label{display:block;margin:.5rem 0}input[type=text],input[type=password],input[type=url]{width:100%;box-sizing:border-box}
section{border:1px solid #ccc;border-radius:.5rem;padding:0 1rem 1rem;margin:1rem 0}progress{width:100%}
.figures{font-variant-numeric:tabular-nums;color:#444}.mode{color:#444;font-style:italic}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5rem;max-height:20rem;overflow:auto}
:focus-visible{outline:3px solid #1a73e8;outline-offset:2px}`;

/**
 * `/`: send files or a text, receive to a download or inline, with progress, cancel, end-to-end encryption
 * and a link with a QR code for the other side. The script is the bundle of `src/page/` at `/_/page.js`
 * (relative, so a proxy's path prefix is kept); the markup works with its labels and live regions alone.
 */
export function indexPage(nonce: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgepipe</title>
<style nonce="${nonce}">${STYLE}</style>
<script src="_/page.js" defer></script>
</head>
<body>
<main>
<h1>edgepipe <small>${VERSION}</small></h1>
<p>Streams data between any two hosts through this server. Nothing is stored: the receiver reads while the sender sends.
Either side may come first. Piping Server clients and <code>curl</code> work with it as they are.</p>
<noscript><p>This page needs JavaScript; <a href="noscript">the form without it</a> sends a file too.</p></noscript>
<form id="token-form"><label>Token (only if this server asks for one) <input type="password" id="token" autocomplete="off"></label></form>
<section aria-labelledby="send-heading">
<h2 id="send-heading">Send</h2>
<form id="send-form">
<label>Path, or a URL (a signed one works as it is) <input type="text" id="send-target" placeholder="e.g. mysecret123" autocomplete="off" required></label>
<label>Receivers <input type="number" id="send-n" min="1" max="1000" value="1"></label>
<label>Files (several are sent as one ZIP) <input type="file" id="send-files" multiple></label>
<label>...or a text <textarea id="send-text" rows="4"></textarea></label>
<label>Passphrase, to encrypt end to end (optional) <input type="password" id="send-passphrase" autocomplete="new-password"></label>
<p><button type="submit" id="send-start">Send</button> <button type="button" id="send-cancel" aria-label="Cancel sending" disabled>Cancel</button></p>
</form>
<p id="send-mode" class="mode"></p>
<progress id="send-progress" hidden aria-labelledby="send-heading"></progress>
<p id="send-figures" class="figures"></p>
<p id="send-status" role="status" aria-live="polite"></p>
<div id="share" hidden>
<p><span id="share-note"></span> <a id="share-link"></a> <button type="button" id="share-copy">Copy</button></p>
<div id="share-qr"></div>
</div>
</section>
<section aria-labelledby="recv-heading">
<h2 id="recv-heading">Receive</h2>
<form id="recv-form">
<label>Path, or a URL <input type="text" id="recv-target" placeholder="e.g. mysecret123" autocomplete="off" required></label>
<label>Passphrase, if the sender encrypted <input type="password" id="recv-passphrase" autocomplete="off"></label>
<p><button type="submit" id="recv-start">Receive</button> <button type="button" id="recv-cancel" aria-label="Cancel receiving" disabled>Cancel</button></p>
</form>
<progress id="recv-progress" hidden aria-labelledby="recv-heading"></progress>
<p id="recv-figures" class="figures"></p>
<p id="recv-status" role="status" aria-live="polite"></p>
<div id="recv-result" hidden>
<pre id="recv-text" tabindex="0" hidden></pre>
<p><a id="recv-save">Save</a></p>
</div>
</section>
<p><a href="help">Command-line usage</a> &middot; <a href="noscript">Without JavaScript</a></p>
</main>
</body>
</html>
`;
}

/**
 * The CSP of `/`: its own script file and style block only; requests to any server (a pasted URL may name
 * another), downloads from the page's own Blob URLs.
 */
export function indexCsp(nonce: string): string {
  return `default-src 'none'; script-src 'self'; style-src 'nonce-${nonce}'; connect-src *; img-src 'self' data: blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`;
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!,
  );
}

/**
 * `/noscript?path=...`: a plain form that uploads without JavaScript (served with `noscriptCsp(nonce)`).
 * The path becomes the form's action, escaped and relative (as piping-server writes it): it resolves
 * against this page, so it stays on this origin and under any path prefix a proxy serves us from.
 */
export function noscriptPage(path: string | null, nonce: string): string {
  const cleaned = (path ?? '').replace(/^\/+/, '');
  const action = cleaned ? cleaned.split('/').map(encodeURIComponent).join('/') : '';
  const form = action
    ? `<h2>Send a file to /${escapeHtml(action)}</h2>
<form method="POST" action="${escapeHtml(action)}" enctype="multipart/form-data">
<p><input type="file" name="input_file"> <button type="submit">Send the file</button></p>
</form>
<h2>...or a text</h2>
<form method="POST" action="${escapeHtml(action)}" enctype="multipart/form-data">
<p><textarea name="input_text" rows="4"></textarea></p>
<p><button type="submit">Send the text</button></p>
</form>`
    : `<form method="GET" action="noscript"><p><label>Path <input name="path" size="30"></label>
<button type="submit">Next</button></p></form>`;
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgepipe (no script)</title><style nonce="${nonce}">${STYLE}</style></head>
<body><h1>edgepipe</h1>${form}<p><a href="./">Back</a></p></body>
</html>
`;
}

/**
 * The CSP of `/noscript`: no script at all, only the page's own style block (by its nonce), forms only to
 * this origin, no `<base>`.
 */
export function noscriptCsp(nonce: string): string {
  return `default-src 'none'; style-src 'nonce-${nonce}'; form-action 'self'; base-uri 'none'`;
}
