import { renderSVG } from 'uqr';
import { byId } from './dom.js';

/**
 * Shows the link the receiving side opens, with its QR code for a phone; or says why there is none (a URL
 * signed for sending only).
 */
export function drawShareLink(link: string | undefined): void {
  const box = byId('share');
  const anchor = byId<HTMLAnchorElement>('share-link');
  const qr = byId('share-qr');
  const note = byId('share-note');
  box.hidden = false;
  if (!link) {
    anchor.hidden = true;
    qr.replaceChildren();
    byId('share-copy').hidden = true;
    note.textContent =
      'This URL is signed for sending only: the receiver needs one signed for receiving (edgepipe sign <path> --recv).';
    return;
  }
  anchor.hidden = false;
  byId('share-copy').hidden = false;
  anchor.href = link;
  anchor.textContent = link;
  note.textContent = 'Open this on the receiving side, or scan it:';
  // The SVG is drawn from the link's QR modules alone: no text of the link reaches the markup.
  const svg = new DOMParser().parseFromString(
    renderSVG(link, { pixelSize: 4 }),
    'image/svg+xml',
  ).documentElement;
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code of the receive link');
  svg.setAttribute('width', '160');
  svg.setAttribute('height', '160');
  qr.replaceChildren(svg);
}

/** The copy button: the link to the clipboard, where the page may write it. */
export function bindShareCopy(): void {
  const button = byId<HTMLButtonElement>('share-copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(byId<HTMLAnchorElement>('share-link').href);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select the link to copy it';
    }
  });
}
