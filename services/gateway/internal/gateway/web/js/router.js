// The router: which view the location hash shows, and the rules every view
// follows. A view is render(ctx) rendering into ctx.main; a load that ends
// after the user navigated elsewhere is dropped (ctx.current() is false);
// refreshes are scheduled through ctx.refreshIn so that navigating cancels
// them.

import { showAlert } from './dom.js';
import { signedIn } from './session.js';

const main = document.getElementById('main');
let config = null;
let seq = 0; // bumped on every navigation and reload
let timer = 0;

// startRouter takes {signIn, routes: [{match(hash) → params|null, render,
// onError?}], onRoute(hash)} and shows the current view, then the view of
// every hash change. The last route should match every hash.
export function startRouter(c) {
  config = c;
  window.addEventListener('hashchange', reload);
  reload();
}

// reload renders the current view again from fresh API data.
export function reload() {
  clearTimeout(timer);
  const mine = ++seq;
  const hash = location.hash || '#/webhooks';
  config.onRoute(hash);
  if (!signedIn()) {
    config.signIn(main);
    return;
  }
  showAlert('');
  let route;
  let params;
  for (route of config.routes) {
    params = route.match(hash);
    if (params) break;
  }
  const ctx = {
    main,
    params,
    current: () => mine === seq,
    refreshIn: (ms) => {
      if (mine !== seq) return;
      clearTimeout(timer);
      timer = setTimeout(reload, ms);
    },
  };
  route.render(ctx).catch((e) => {
    if (!ctx.current()) return;
    showAlert(e.message);
    route.onError?.(ctx);
  });
}

// run performs an action, shows the API's message when it fails, and always
// reloads the current view afterwards so nothing stale stays on screen.
export async function run(button, fn) {
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (e) {
    showAlert(e.message);
  } finally {
    if (button) button.disabled = false;
  }
  if (signedIn()) reload();
}
