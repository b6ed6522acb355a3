// VoxScriber Webhooks dashboard: native ES modules, no dependencies, no
// build step. This module wires the session, the navigation and the views.
//
//   session.js  the API key (sessionStorage) and sign-in/sign-out events
//   api.js      REST client (bearer key, API messages as is, listAll paging)
//   dom.js      element builders, re-render keeping focus, formatting
//   router.js   hash routes, stale-load dropping, refresh timer, run()
//   views/      one module per view: signin, webhooks (endpoint cards, add
//               form) with endpoint-edit, replay, chart and settings;
//               monitoring (deliveries list and one delivery's attempts);
//               keys (API keys: create, shown once; list; revoke)
//               history (search over the retention, 24 h rollup charts)
//               audit (the account's audit log, filter by resource, paged)
//
// Each module owns its state; state tied to the account is dropped on
// sign-out through onSessionChange. The modules imported below register
// their listeners first (an import is evaluated before its importer), so
// they are reset before this module re-renders.

import { showAlert } from './dom.js';
import { reload, startRouter } from './router.js';
import { onSessionChange, signedIn, signOut } from './session.js';
import { renderSignIn } from './views/signin.js';
import { renderWebhooks } from './views/webhooks.js';
import { renderDelivery, renderMonitoring, keepTrying } from './views/monitoring.js';
import { renderKeys } from './views/keys.js';
import { renderHistory } from './views/history.js';
import { renderAudit } from './views/audit.js';

const nav = document.getElementById('nav');
const signOutButton = document.getElementById('signout');

// updateNav shows the navigation and "Sign out" only to a signed-in user and
// marks the link of the current page.
function updateNav(hash) {
  const on = signedIn();
  nav.hidden = !on;
  signOutButton.hidden = !on;
  for (const a of nav.querySelectorAll('[data-nav]')) {
    const current = hash.startsWith(`#/${a.dataset.nav}`) || (a.dataset.nav === 'monitoring' && hash.startsWith('#/deliveries/'));
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

const prefix = (p) => (hash) => (hash.startsWith(p) ? { rest: decodeURIComponent(hash.slice(p.length)) } : null);

onSessionChange((message) => {
  reload();
  showAlert(message);
});
signOutButton.addEventListener('click', () => signOut());

startRouter({
  signIn: renderSignIn,
  onRoute: updateNav,
  routes: [
    { match: prefix('#/deliveries/'), render: (ctx) => renderDelivery(ctx, ctx.params.rest), onError: keepTrying },
    { match: prefix('#/monitoring'), render: renderMonitoring, onError: keepTrying },
    { match: prefix('#/keys'), render: renderKeys },
    { match: prefix('#/history'), render: renderHistory },
    { match: prefix('#/audit'), render: renderAudit },
    { match: () => ({}), render: renderWebhooks },
  ],
});
