// The page's script (`/_/page.js`): bundled with the client core at `npm run build` (scripts/build-page.mjs).
import { byId } from './dom.js';
import { targetFromFragment } from './pipe-address.js';
import { bindReceivePanel } from './receive-panel.js';
import { bindSendPanel } from './send-panel.js';
import { bindShareCopy } from './share-link.js';

bindSendPanel();
bindReceivePanel();
bindShareCopy();
// The token's form only groups the field (browsers expect a password field in a form): Enter sends nothing.
byId('token-form').addEventListener('submit', (event) => event.preventDefault());

// A shared link (`#recv=<path or URL>`) opens the page ready to receive, also when only the fragment changed.
function takeFragment(): void {
  const shared = targetFromFragment(location.hash);
  if (!shared) return;
  const input = byId<HTMLInputElement>(shared.role === 'recv' ? 'recv-target' : 'send-target');
  input.value = shared.target;
  byId(shared.role === 'recv' ? 'recv-start' : 'send-start').focus();
}
takeFragment();
window.addEventListener('hashchange', takeFragment);
