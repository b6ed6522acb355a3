// VoxScriber Webhooks dashboard: one ES module, no dependencies, no build.
// Every piece of text from the API or a receiver goes into the page as a
// text node or an attribute value (never as HTML).

const KEY_STORAGE = 'voxscriber.apiKey';
const REFRESH_MS = 3000;
const CHART_PAGES = 10; // at most 10 × 100 deliveries for the 24 h charts
const DAY_MS = 24 * 3600 * 1000;

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || '',
  eventTypes: null,
  endpoints: [],
  notices: new Map(), // endpoint id -> {ok, nodes}
  secret: null, // {endpointId, url, secret, what}: shown once, memory only
  confirmDelete: '',
  filters: { endpointId: '', status: '', eventType: '' },
  pages: [''], // page tokens of the monitoring list, last one is current
  autoRefresh: true,
  timer: 0,
  seq: 0, // bumped on every navigation; stale loads are dropped
  focus: '', // data-key to focus after the next render
};

const main = document.getElementById('main');

// ---- DOM helpers ----------------------------------------------------------

const SVG_TAGS = new Set(['svg', 'g', 'rect', 'line', 'title', 'text']);

function h(tag, attrs, ...children) {
  const el = SVG_TAGS.has(tag)
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// swap replaces a container's content, keeping keyboard focus on the
// element with the same data-key (auto-refresh must not steal focus).
// Open <details> with a data-key stay open too.
function swap(container, ...nodes) {
  const focused = document.activeElement?.closest?.('[data-key]');
  const key = state.focus || (focused && container.contains(focused) ? focused.dataset.key : '');
  state.focus = '';
  const open = [...container.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key);
  const typed = [...container.querySelectorAll('form input')].filter(edited).map((i) => [fieldKey(i), i.type === 'checkbox' ? i.checked : i.value]);
  container.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
  for (const k of open) {
    const d = container.querySelector(`details[data-key="${CSS.escape(k)}"]`);
    if (d) d.open = true;
  }
  const fields = new Map([...container.querySelectorAll('form input')].map((i) => [fieldKey(i), i]));
  for (const [k, v] of typed) {
    const i = fields.get(k);
    if (i && i.type === 'checkbox') i.checked = v;
    else if (i) i.value = v;
  }
  const el = key && container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (el) (el.tagName === 'DETAILS' ? el.querySelector('summary') : el).focus();
}

// What the user typed into a form survives a re-render (a reload after an
// action elsewhere on the page); a form reset after submit clears it.
const fieldKey = (i) => (i.id || `${i.name}=${i.value}`);
const edited = (i) => (i.type === 'checkbox' ? i.checked !== i.defaultChecked : i.value !== i.defaultValue);

function showAlert(msg) {
  const el = document.getElementById('alert');
  el.hidden = !msg;
  el.textContent = msg || '';
}

const safeHref = (u) => (/^https?:\/\//i.test(u || '') ? u : null);
const short = (v, prefix) => (v || '').replace(prefix, '') || 'UNKNOWN';
const epStatus = (e) => short(e.status, 'ENDPOINT_STATUS_');
const dlStatus = (d) => short(d.status, 'DELIVERY_STATUS_');
const errType = (t) => (t && t !== 'ERROR_TYPE_UNSPECIFIED' ? t.replace('ERROR_TYPE_', '').toLowerCase() : '');

function fmtTime(iso) {
  if (!iso) return '—';
  const t = new Date(iso);
  return isNaN(t) ? iso : t.toLocaleString();
}

function fmtNext(d) {
  if (!d.nextAttemptTime || dlStatus(d) !== 'PENDING') return '—';
  const s = Math.round((new Date(d.nextAttemptTime) - Date.now()) / 1000);
  const when = new Date(d.nextAttemptTime).toLocaleTimeString();
  if (s <= 0) return `due now (${when})`;
  const rel = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  return `in ${rel} (${when})`;
}

function badge(text) {
  return h('span', { class: `badge badge-${text.toLowerCase()}` }, text);
}

// ---- API ------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text.trim() };
  }
  if (!res.ok) {
    const err = new Error(data.message || `${res.status} ${res.statusText}`);
    err.status = res.status;
    // A key that stops working (revoked) ends the session; a wrong key on
    // the sign-in form is just reported there.
    if (res.status === 401 && sessionStorage.getItem(KEY_STORAGE)) signOut(`Your API key was refused: ${err.message}`);
    throw err;
  }
  return data;
}

const q = (params) => {
  const s = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined));
  return s.toString() ? `?${s}` : '';
};

async function loadEventTypes() {
  if (!state.eventTypes) state.eventTypes = (await api('GET', '/v1/event-types')).eventTypes || [];
  return state.eventTypes;
}

async function loadEndpoints() {
  const all = [];
  let token = '';
  for (let i = 0; i < 20; i++) {
    const r = await api('GET', `/v1/endpoints${q({ pageSize: 100, pageToken: token })}`);
    all.push(...(r.endpoints || []));
    token = r.nextPageToken || '';
    if (!token) break;
  }
  state.endpoints = all;
  return all;
}

// recentDeliveries pages through the last 24 h of deliveries, up to a bound.
async function recentDeliveries() {
  const since = new Date(Date.now() - DAY_MS).toISOString();
  const all = [];
  let token = '';
  for (let i = 0; i < CHART_PAGES; i++) {
    const r = await api('GET', `/v1/deliveries${q({ startTime: since, pageSize: 100, pageToken: token })}`);
    all.push(...(r.deliveries || []));
    token = r.nextPageToken || '';
    if (!token) break;
  }
  return { deliveries: all, truncated: Boolean(token) };
}

// ---- navigation -----------------------------------------------------------

function signOut(msg) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = '';
  state.secret = null;
  state.notices.clear();
  state.eventTypes = null;
  route();
  showAlert(msg || '');
}

function route() {
  clearTimeout(state.timer);
  const seq = ++state.seq;
  const hash = location.hash || '#/webhooks';
  const nav = document.getElementById('nav');
  nav.hidden = !state.key;
  for (const a of nav.querySelectorAll('[data-nav]')) {
    const current = hash.startsWith(`#/${a.dataset.nav}`) || (a.dataset.nav === 'monitoring' && hash.startsWith('#/deliveries/'));
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!state.key) return renderSignIn();
  showAlert('');
  let view;
  if (hash.startsWith('#/deliveries/')) view = () => deliveryView(decodeURIComponent(hash.slice('#/deliveries/'.length)), seq);
  else if (hash.startsWith('#/monitoring')) view = () => monitoringView(seq);
  else view = () => webhooksView(seq);
  view().catch((e) => {
    if (seq !== state.seq) return;
    showAlert(e.message);
    if (!hash.startsWith('#/webhooks')) scheduleRefresh(seq); // keep trying
  });
}

// run performs an action, shows the API's message when it fails, and always
// reloads the current view afterwards so nothing stale stays on screen.
async function run(button, fn) {
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (e) {
    showAlert(e.message);
  } finally {
    if (button) button.disabled = false;
  }
  if (state.key) route();
}

// ---- sign in --------------------------------------------------------------

function renderSignIn() {
  const input = h('input', { id: 'api-key', name: 'apiKey', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', {
    class: 'card narrow',
    onsubmit: async (ev) => {
      ev.preventDefault();
      state.key = input.value.trim();
      err.textContent = '';
      try {
        await api('GET', '/v1/endpoints?pageSize=1');
        sessionStorage.setItem(KEY_STORAGE, state.key);
        if (!location.hash) location.hash = '#/webhooks';
        route();
      } catch (e) {
        state.key = '';
        err.textContent = e.message;
        document.getElementById('nav').hidden = true;
        input.focus();
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'Paste an API key of your account. It is kept for this browser tab only.'),
  h('label', { for: 'api-key' }, 'API key'), input, err,
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  main.replaceChildren(form);
  input.focus();
}

// ---- Settings → Webhooks --------------------------------------------------

async function webhooksView(seq) {
  const [types, endpoints, settings, recent] = await Promise.all([
    loadEventTypes(), loadEndpoints(), api('GET', '/v1/settings'), recentDeliveries(),
  ]);
  if (seq !== state.seq) return;
  const byEndpoint = new Map();
  for (const d of recent.deliveries) {
    if (!byEndpoint.has(d.endpointId)) byEndpoint.set(d.endpointId, []);
    byEndpoint.get(d.endpointId).push(d);
  }
  swap(main,
    h('h1', {}, 'Settings → Webhooks'),
    h('section', { 'aria-labelledby': 'endpoints-h' },
      h('h2', { id: 'endpoints-h' }, `Endpoints (${endpoints.length})`),
      endpoints.length ? null : h('p', { class: 'muted' }, 'No endpoints yet. Add one below.'),
      h('div', { class: 'endpoints' }, endpoints.map((e) => endpointCard(e, types, byEndpoint.get(e.id) || []))),
      recent.truncated ? h('p', { class: 'muted' }, `Charts show the latest ${recent.deliveries.length} deliveries only.`) : null),
    addEndpointForm(types),
    settingsForm(settings.settings || {}));
}

function endpointCard(e, types, deliveries) {
  const status = epStatus(e);
  const id = e.id;
  const testType = h('select', { id: `test-type-${id}`, 'data-key': `test-type-${id}` },
    types.map((t) => h('option', { value: t.name }, t.name)));
  if ((e.eventTypes || []).length) testType.value = e.eventTypes[0];
  const notice = state.notices.get(id);
  const confirming = state.confirmDelete === id;
  return h('article', { class: 'card endpoint', 'data-endpoint-id': id, 'aria-label': `Endpoint ${e.url}` },
    h('div', { class: 'endpoint-head' },
      h('h3', { class: 'url' }, e.url),
      badge(status)),
    e.description ? h('p', {}, e.description) : null,
    status === 'DISABLED'
      ? h('p', { class: 'reason' }, h('strong', {}, 'Disabled by the system: '), e.disabledReason || 'no reason given',
        e.disableTime ? ` (${fmtTime(e.disableTime)})` : '', '. Fix the receiver, then activate it again.')
      : null,
    h('p', { class: 'muted small' }, 'Events: ', (e.eventTypes || []).join(', ') || '—', ' · id ', h('code', {}, id)),
    chart(deliveries, e.url),
    h('div', { class: 'actions' },
      h('span', { class: 'inline-field' },
        h('label', { for: `test-type-${id}`, class: 'sr-only' }, 'Test event type'), testType,
        h('button', { type: 'button', 'data-key': `test-${id}`, onclick: (ev) => sendTest(ev.currentTarget, e, testType.value) }, 'Send test')),
      status === 'ACTIVE'
        ? h('button', { type: 'button', 'data-key': `disable-${id}`, onclick: (ev) => run(ev.currentTarget, () => api('POST', `/v1/endpoints/${id}:disable`, {})) }, 'Deactivate')
        : h('button', { type: 'button', 'data-key': `enable-${id}`, onclick: (ev) => run(ev.currentTarget, () => api('POST', `/v1/endpoints/${id}:enable`, {})) }, 'Activate'),
      h('button', { type: 'button', 'data-key': `rotate-${id}`, onclick: (ev) => rotate(ev.currentTarget, e) }, 'Rotate secret'),
      h('a', { href: '#/monitoring', onclick: () => { state.filters = { endpointId: id, status: '', eventType: '' }; state.pages = ['']; } }, 'Deliveries'),
      confirming
        ? h('span', { class: 'confirm', role: 'group', 'aria-label': 'Confirm delete' },
          `Delete ${e.url}? `,
          h('button', { type: 'button', class: 'danger', 'data-key': `confirm-delete-${id}`, onclick: (ev) => run(ev.currentTarget, async () => { state.confirmDelete = ''; state.notices.delete(id); await api('DELETE', `/v1/endpoints/${id}`); }) }, 'Yes, delete'),
          h('button', { type: 'button', 'data-key': `cancel-delete-${id}`, onclick: () => { state.confirmDelete = ''; state.focus = `delete-${id}`; route(); } }, 'Cancel'))
        : h('button', { type: 'button', class: 'danger-outline', 'data-key': `delete-${id}`, onclick: () => { state.confirmDelete = id; state.focus = `cancel-delete-${id}`; route(); } }, 'Delete')),
    h('div', { class: 'notice-slot', 'aria-live': 'polite' },
      notice ? h('div', { class: `notice ${notice.ok ? 'ok' : 'bad'}`, 'data-testid': 'notice' }, notice.nodes) : null),
    state.secret?.endpointId === id ? secretBox(state.secret) : null);
}

async function sendTest(button, e, eventType) {
  await run(button, async () => {
    state.notices.delete(e.id);
    try {
      const r = await api('POST', `/v1/endpoints/${e.id}:sendTest`, { eventType });
      const latency = `${r.latencyMs || 0} ms`;
      const nodes = r.success
        ? [h('strong', {}, `Test delivered: HTTP ${r.statusCode}`), ` in ${latency}.`]
        : [h('strong', {}, 'Test failed'), r.statusCode ? `: HTTP ${r.statusCode}` : '', ` after ${latency}`,
          errType(r.errorType) ? ` (${errType(r.errorType)})` : '', r.error ? ` — ${r.error}` : ''];
      if (r.responseBody) nodes.push(h('details', {}, h('summary', {}, 'Response body'), h('pre', {}, r.responseBody)));
      state.notices.set(e.id, { ok: r.success, nodes });
    } catch (err) {
      state.notices.set(e.id, { ok: false, nodes: [h('strong', {}, 'Send test refused: '), err.message] });
    }
  });
}

async function rotate(button, e) {
  await run(button, async () => {
    const r = await api('POST', `/v1/endpoints/${e.id}:rotateSecret`, {});
    state.notices.set(e.id, { ok: true, nodes: ['Secret rotated. The old secret stays valid for the overlap window.'] });
    state.secret = { endpointId: e.id, url: e.url, secret: r.secret, what: 'New signing secret' };
  });
}

function secretBox(s) {
  const code = h('code', { class: 'secret-value', 'data-testid': 'secret' }, s.secret);
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  return h('div', { class: 'secret', role: 'region', 'aria-label': s.what },
    h('p', {}, h('strong', {}, `${s.what} for ${s.url}`), ' — copy it now: it is not shown again.'),
    code,
    h('div', { class: 'actions' },
      h('button', {
        type: 'button', class: 'primary', 'data-key': 'copy-secret',
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(s.secret);
          } catch {
            const range = document.createRange();
            range.selectNodeContents(code);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
            document.execCommand('copy');
          }
          status.textContent = 'Copied.';
        },
      }, 'Copy secret'),
      h('button', { type: 'button', 'data-key': 'hide-secret', onclick: () => { state.secret = null; route(); } }, 'Done, hide it'),
      status));
}

function addEndpointForm(types) {
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', {
    class: 'card', 'aria-labelledby': 'add-h',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const body = { url: fd.get('url').trim(), eventTypes: fd.getAll('eventTypes') };
      if (fd.get('description')) body.description = fd.get('description');
      if (fd.get('secret')) body.secret = fd.get('secret').trim();
      if (fd.get('paused')) body.status = 'ENDPOINT_STATUS_INACTIVE';
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const r = await api('POST', '/v1/endpoints', body);
        state.secret = { endpointId: r.endpoint.id, url: r.endpoint.url, secret: r.secret, what: 'Signing secret' };
        form.reset();
        route();
      } catch (e) {
        err.textContent = e.message;
        button.disabled = false;
      }
    },
  },
  h('h2', { id: 'add-h' }, 'Add endpoint'),
  h('label', { for: 'new-url' }, 'Endpoint URL'),
  h('input', { id: 'new-url', name: 'url', type: 'url', required: true, placeholder: 'https://example.com/webhook/voxscriber' }),
  h('label', { for: 'new-description' }, 'Description (optional)'),
  h('input', { id: 'new-description', name: 'description', type: 'text' }),
  h('fieldset', {},
    h('legend', {}, 'Events to send'),
    h('div', { class: 'checks' }, types.map((t) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'eventTypes', value: t.name }),
      h('span', {}, h('code', {}, t.name), t.description ? h('span', { class: 'muted small' }, ` ${t.description}`) : null))))),
  h('label', { for: 'new-secret' }, 'Signing secret (optional; generated when empty)'),
  h('input', { id: 'new-secret', name: 'secret', type: 'text', autocomplete: 'off', placeholder: 'whsec_…' }),
  h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'paused' }), 'Create inactive (test it first, activate later)'),
  err,
  h('button', { type: 'submit', class: 'primary' }, 'Add endpoint'));
  return form;
}

function settingsForm(s) {
  const msg = h('p', { role: 'status', class: 'muted' });
  const form = h('form', {
    class: 'card', 'aria-labelledby': 'settings-h',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const body = { notificationEmail: fd.get('notificationEmail').trim(), creditsLowThreshold: Number(fd.get('creditsLowThreshold') || 0) };
      try {
        await api('PATCH', '/v1/settings', body);
        const fresh = (await api('GET', '/v1/settings')).settings || {};
        form.elements.notificationEmail.defaultValue = form.elements.notificationEmail.value = fresh.notificationEmail || '';
        form.elements.creditsLowThreshold.defaultValue = form.elements.creditsLowThreshold.value = String(fresh.creditsLowThreshold ?? 0);
        msg.className = 'ok-text';
        msg.textContent = 'Settings saved.';
      } catch (e) {
        msg.className = 'error';
        msg.textContent = e.message;
      }
    },
  },
  h('h2', { id: 'settings-h' }, 'Notifications'),
  h('label', { for: 'set-email' }, 'Notification email (disabled endpoints, low credits)'),
  h('input', { id: 'set-email', name: 'notificationEmail', type: 'email', value: s.notificationEmail || '' }),
  h('label', { for: 'set-threshold' }, 'Credits low threshold'),
  h('input', { id: 'set-threshold', name: 'creditsLowThreshold', type: 'number', min: 0, step: 'any', value: String(s.creditsLowThreshold ?? 0) }),
  msg,
  h('button', { type: 'submit', class: 'primary' }, 'Save settings'));
  return form;
}

// chart draws 24 hourly stacked bars of delivered (green) and failing (red)
// deliveries, from the deliveries listed for the endpoint.
function chart(deliveries, label) {
  const now = Date.now();
  const ok = new Array(24).fill(0);
  const bad = new Array(24).fill(0);
  for (const d of deliveries) {
    const t = new Date(d.updateTime || d.createTime).getTime();
    const slot = 23 - Math.floor((now - t) / 3600000);
    if (slot < 0 || slot > 23) continue;
    const st = dlStatus(d);
    if (st === 'SUCCEEDED') ok[slot]++;
    else if (st === 'FAILED' || st === 'PARKED' || (st === 'PENDING' && d.attemptCount > 0)) bad[slot]++;
  }
  const okSum = ok.reduce((a, b) => a + b, 0);
  const badSum = bad.reduce((a, b) => a + b, 0);
  const max = Math.max(1, ...ok.map((v, i) => v + bad[i]));
  const W = 240, H = 48, bw = W / 24;
  const bars = [];
  for (let i = 0; i < 24; i++) {
    const hOk = (ok[i] / max) * H, hBad = (bad[i] / max) * H;
    const ago = 23 - i;
    bars.push(h('g', {},
      h('title', {}, `${ago === 0 ? 'this hour' : `${ago} h ago`}: ${ok[i]} delivered, ${bad[i]} failing`),
      h('rect', { x: i * bw + 1, y: 0, width: bw - 2, height: H, class: 'bar-bg' }),
      hOk ? h('rect', { x: i * bw + 1, y: H - hOk, width: bw - 2, height: hOk, class: 'bar-ok' }) : null,
      hBad ? h('rect', { x: i * bw + 1, y: H - hOk - hBad, width: bw - 2, height: hBad, class: 'bar-bad' }) : null));
  }
  const summary = `Last 24 hours: ${okSum} delivered, ${badSum} failing`;
  return h('figure', { class: 'chart' },
    h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${summary} (${label})`, preserveAspectRatio: 'none' }, bars),
    h('figcaption', { class: 'small' },
      h('span', { class: 'key key-ok' }), `${okSum} delivered `,
      h('span', { class: 'key key-bad' }), `${badSum} failing · last 24 h`));
}

// ---- Monitoring -----------------------------------------------------------

function scheduleRefresh(seq) {
  clearTimeout(state.timer);
  if (state.autoRefresh && seq === state.seq) {
    state.timer = setTimeout(() => route(), REFRESH_MS);
  }
}

function refreshControls() {
  return h('div', { class: 'refresh' },
    h('button', {
      type: 'button', 'aria-pressed': String(state.autoRefresh), 'data-key': 'auto-refresh',
      onclick: () => { state.autoRefresh = !state.autoRefresh; route(); },
    }, state.autoRefresh ? 'Pause auto-refresh' : 'Resume auto-refresh'),
    h('button', { type: 'button', 'data-key': 'refresh-now', onclick: () => route() }, 'Refresh now'),
    h('span', { class: 'muted small' }, state.autoRefresh ? `Refreshing every ${REFRESH_MS / 1000} s` : 'Auto-refresh paused'));
}

async function monitoringView(seq) {
  const f = state.filters;
  const token = state.pages[state.pages.length - 1];
  const [types, endpoints, list] = await Promise.all([
    loadEventTypes(), loadEndpoints(),
    api('GET', `/v1/deliveries${q({ endpointId: f.endpointId, status: f.status, eventType: f.eventType, pageSize: 25, pageToken: token })}`),
  ]);
  if (seq !== state.seq) return;
  const urls = new Map(endpoints.map((e) => [e.id, e.url]));
  const deliveries = list.deliveries || [];
  const setFilter = (name) => (ev) => { state.filters = { ...state.filters, [name]: ev.currentTarget.value }; state.pages = ['']; route(); };
  const select = (name, label, options) => h('span', { class: 'field' },
    h('label', { for: `filter-${name}` }, label),
    h('select', { id: `filter-${name}`, name, 'data-key': `filter-${name}`, onchange: setFilter(name) },
      h('option', { value: '' }, 'All'),
      options.map(([v, text]) => h('option', { value: v, selected: f[name] === v }, text))));
  swap(main,
    h('h1', {}, 'Monitoring'),
    h('form', { class: 'filters card', 'aria-label': 'Filter deliveries', onsubmit: (ev) => ev.preventDefault() },
      select('endpointId', 'Endpoint', endpoints.map((e) => [e.id, e.url])),
      select('status', 'Status', ['PENDING', 'SUCCEEDED', 'FAILED', 'PARKED', 'CANCELED'].map((s) => [`DELIVERY_STATUS_${s}`, s])),
      select('eventType', 'Event type', types.map((t) => [t.name, t.name]))),
    refreshControls(),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'deliveries' },
        h('caption', { class: 'sr-only' }, 'Deliveries, newest first'),
        h('thead', {}, h('tr', {}, ['Status', 'Event type', 'Endpoint', 'Attempts', 'Last code', 'Next attempt', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, deliveries.map((d) => h('tr', { 'data-delivery-id': d.id },
          h('td', { 'data-label': 'Status' }, h('span', {}, badge(dlStatus(d)), d.test ? h('span', { class: 'tag' }, 'test') : null)),
          h('td', { 'data-label': 'Event type' }, h('a', { href: `#/deliveries/${encodeURIComponent(d.id)}`, 'data-key': `open-${d.id}` }, d.eventType || '—')),
          h('td', { 'data-label': 'Endpoint', class: 'url' }, urls.get(d.endpointId) || d.endpointId),
          h('td', { 'data-label': 'Attempts' }, String(d.attemptCount || 0)),
          h('td', { 'data-label': 'Last code', title: d.lastError || '' }, d.lastStatusCode ? String(d.lastStatusCode) : (d.lastError ? 'error' : '—')),
          h('td', { 'data-label': 'Next attempt' }, fmtNext(d)),
          h('td', { 'data-label': 'Created' }, fmtTime(d.createTime))))))),
    deliveries.length ? null : h('p', { class: 'muted' }, 'No deliveries match.'),
    h('div', { class: 'pager' },
      state.pages.length > 1 ? h('button', { type: 'button', 'data-key': 'newer', onclick: () => { state.pages.pop(); route(); } }, '← Newer') : null,
      list.nextPageToken ? h('button', { type: 'button', 'data-key': 'older', onclick: () => { state.pages.push(list.nextPageToken); route(); } }, 'Older →') : null));
  scheduleRefresh(seq);
}

async function deliveryView(id, seq) {
  const [{ delivery: d }, endpoints] = await Promise.all([api('GET', `/v1/deliveries/${encodeURIComponent(id)}`), loadEndpoints()]);
  if (seq !== state.seq) return;
  const url = endpoints.find((e) => e.id === d.endpointId)?.url || d.endpointId;
  let payload = d.payload || '';
  try {
    payload = JSON.stringify(JSON.parse(payload), null, 2);
  } catch { /* shown as received */ }
  const trace = safeHref(d.traceUrl);
  const row = (k, ...v) => [h('dt', {}, k), h('dd', {}, ...v)];
  swap(main,
    h('p', {}, h('a', { href: '#/monitoring' }, '← All deliveries')),
    h('h1', {}, 'Delivery ', h('code', { class: 'id' }, d.id)),
    refreshControls(),
    h('section', { class: 'card', 'aria-label': 'Summary' },
      h('dl', { class: 'summary' },
        row('Status', badge(dlStatus(d)), d.test ? h('span', { class: 'tag' }, 'test') : null),
        row('Event', h('code', {}, d.eventType || '—'), ' ', h('span', { class: 'muted small' }, d.eventId || '')),
        row('Endpoint', h('span', { class: 'url' }, url)),
        row('Attempts', String(d.attemptCount || 0)),
        row('Next attempt', fmtNext(d)),
        row('Last error', d.lastError || '—'),
        row('Created', fmtTime(d.createTime)),
        row('Trace', trace ? h('a', { href: trace, target: '_blank', rel: 'noopener noreferrer' }, 'Open trace ', h('code', {}, d.traceId || '')) : (d.traceId ? h('code', {}, d.traceId) : '—'))),
      h('div', { class: 'actions' },
        h('button', {
          type: 'button', class: 'primary', 'data-key': 'resend', disabled: Boolean(d.test),
          title: d.test ? 'Test deliveries are re-sent with Send test' : undefined,
          onclick: (ev) => run(ev.currentTarget, () => api('POST', `/v1/deliveries/${encodeURIComponent(d.id)}:retry`, {})),
        }, 'Resend now'))),
    h('section', { class: 'card', 'aria-labelledby': 'payload-h' },
      h('h2', { id: 'payload-h' }, 'Payload'),
      h('pre', { class: 'payload', tabindex: 0 }, payload || '—')),
    h('section', { 'aria-labelledby': 'attempts-h' },
      h('h2', { id: 'attempts-h' }, 'Attempts'),
      (d.attempts || []).length ? h('ol', { class: 'attempts' }, d.attempts.map((a) => attemptItem(a, d))) : h('p', { class: 'muted' }, 'No attempt yet.')));
  scheduleRefresh(seq);
}

function attemptItem(a, d) {
  const ok = a.statusCode >= 200 && a.statusCode < 300 && !errType(a.errorType);
  const trace = safeHref(a.traceUrl || d.traceUrl);
  const headers = Object.entries(a.requestHeaders || {}).sort(([x], [y]) => x.localeCompare(y));
  return h('li', { class: `card attempt ${ok ? 'ok' : 'bad'}` },
    h('p', { class: 'attempt-head' },
      h('strong', {}, `Attempt ${a.number || '?'}`), ' ',
      badge(ok ? 'SUCCEEDED' : 'FAILED'), ' ',
      a.statusCode ? `HTTP ${a.statusCode}` : 'no response', ` · ${a.latencyMs || 0} ms · ${fmtTime(a.startTime)}`,
      trace ? [' · ', h('a', { href: trace, target: '_blank', rel: 'noopener noreferrer' }, 'trace')] : null),
    errType(a.errorType) || a.error ? h('p', { class: 'error' }, errType(a.errorType) ? `${errType(a.errorType)}: ` : '', a.error || '') : null,
    a.url ? h('p', { class: 'muted small url' }, 'POST ', a.url) : null,
    a.responseBody ? h('details', { 'data-key': `response-${a.number}` }, h('summary', {}, 'Response (excerpt)'), h('pre', {}, a.responseBody)) : null,
    headers.length ? h('details', { 'data-key': `headers-${a.number}` }, h('summary', {}, 'Request headers we sent'),
      h('dl', { class: 'headers' }, headers.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]))) : null);
}

// ---- start ----------------------------------------------------------------

document.getElementById('signout').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', route);
route();
