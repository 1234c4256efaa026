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

const STYLE = `body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
input,textarea,button{font:inherit}textarea{width:100%}code{background:#eee;padding:0 .2em}`;

/** `/`: send a file or a text to a path from the browser, or open a path to receive. */
export function indexPage(): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgepipe</title>
<style>${STYLE}</style>
</head>
<body>
<h1>edgepipe <small>${VERSION}</small></h1>
<p>Streams data between any two hosts through this server. Nothing is stored: the receiver reads while the sender sends.
It speaks the <a href="https://github.com/nwtgck/piping-server">Piping Server</a> protocol: Piping clients work with it as they are.</p>
<h2>Send</h2>
<p><label>Path <input id="path" placeholder="e.g. mysecret123" size="30"></label></p>
<p><input type="file" id="file"></p>
<p><textarea id="text" rows="4" placeholder="...or type a text"></textarea></p>
<p><button id="send">Send</button> <progress id="progress" max="100" value="0" hidden></progress> <span id="message"></span></p>
<h2>Receive</h2>
<p>Open this server's address followed by the path in the receiving browser, or run <code>curl</code> on it.
<button id="receive">Receive this path</button></p>
<p><a href="/help">Command-line usage</a> &middot; <a href="/noscript">Without JavaScript</a></p>
<script>
const $ = (id) => document.getElementById(id);
const target = () => '/' + $('path').value.replace(/^\\/+/, '');
$('receive').onclick = () => { if ($('path').value) location.href = target(); };
$('send').onclick = () => {
  if (!$('path').value) { $('message').textContent = 'Enter a path first.'; return; }
  const file = $('file').files[0];
  const body = file || new Blob([$('text').value], { type: 'text/plain' });
  const xhr = new XMLHttpRequest();
  xhr.open('PUT', target());
  if (file && !file.type) xhr.setRequestHeader('Content-Type', 'application/octet-stream');
  if (file) xhr.setRequestHeader('Content-Disposition', 'attachment; filename="' + encodeURIComponent(file.name) + '"');
  $('progress').hidden = false;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) $('progress').value = (e.loaded / e.total) * 100; $('message').textContent = e.loaded + ' bytes sent'; };
  xhr.onload = () => { $('message').textContent = xhr.status === 200 ? 'Sent.' : xhr.responseText; };
  xhr.onerror = () => { $('message').textContent = 'Upload failed.'; };
  $('message').textContent = 'Waiting for the receiver...';
  xhr.send(body);
};
</script>
</body>
</html>
`;
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
