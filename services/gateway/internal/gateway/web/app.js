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
  edit: null, // draft of the endpoint being edited: {id, url, description, eventTypes, headers, rate, orig}
  replayOpen: '', // endpoint id whose replay form is open
  replays: new Map(), // endpoint id -> replay tracker (see startReplay)
  replayTimer: 0,
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
  state.edit = null;
  state.replayOpen = '';
  state.replays.clear();
  clearTimeout(state.replayTimer);
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
    endpointExtras(e),
    chart(deliveries, e.url),
    h('div', { class: 'actions' },
      h('span', { class: 'inline-field' },
        h('label', { for: `test-type-${id}`, class: 'sr-only' }, 'Test event type'), testType,
        h('button', { type: 'button', 'data-key': `test-${id}`, onclick: (ev) => sendTest(ev.currentTarget, e, testType.value) }, 'Send test')),
      status === 'ACTIVE'
        ? h('button', { type: 'button', 'data-key': `disable-${id}`, onclick: (ev) => run(ev.currentTarget, () => api('POST', `/v1/endpoints/${id}:disable`, {})) }, 'Deactivate')
        : h('button', { type: 'button', 'data-key': `enable-${id}`, onclick: (ev) => run(ev.currentTarget, () => api('POST', `/v1/endpoints/${id}:enable`, {})) }, 'Activate'),
      h('button', { type: 'button', 'data-key': `edit-${id}`, 'aria-expanded': String(state.edit?.id === id), onclick: () => toggleEdit(e) }, 'Edit'),
      h('button', { type: 'button', 'data-key': `replay-${id}`, 'aria-expanded': String(state.replayOpen === id), onclick: () => toggleReplay(id) }, 'Replay…'),
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
    state.edit?.id === id ? editEndpointForm(e, types) : null,
    state.replayOpen === id ? replayForm(e) : null,
    h('div', { class: 'replay-slot', 'data-replay-for': id, 'aria-live': 'polite' }, replayNodes(id)),
    state.secret?.endpointId === id ? secretBox(state.secret) : null);
}

// endpointExtras shows the rate limit and the names of the custom headers
// (their values may be credentials of the receiver: never shown).
function endpointExtras(e) {
  const rate = Number(e.rateLimitPerSecond || 0);
  const names = Object.keys(e.headers || {}).sort((a, b) => a.localeCompare(b));
  return h('p', { class: 'muted small', 'data-testid': 'endpoint-extras' },
    'Rate limit: ', rate > 0 ? `${rate} requests/s` : 'none',
    ' · Custom headers: ', names.length ? names.map((n, i) => [i ? ', ' : '', h('code', {}, n)]) : 'none');
}

// ---- edit an endpoint -----------------------------------------------------

function toggleEdit(e) {
  if (state.edit?.id === e.id) {
    state.edit = null;
    state.focus = `edit-${e.id}`;
  } else {
    const headers = Object.entries(e.headers || {}).sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value], n) => ({ n, orig: name, name, value: '', old: value }));
    state.edit = {
      id: e.id, url: e.url || '', description: e.description || '', eventTypes: [...(e.eventTypes || [])],
      rate: String(Number(e.rateLimitPerSecond || 0)), headers, rows: headers.length,
      orig: { url: e.url || '', description: e.description || '', eventTypes: [...(e.eventTypes || [])], headers: { ...(e.headers || {}) }, rate: Number(e.rateLimitPerSecond || 0) },
    };
    state.focus = `edit-url-${e.id}`;
  }
  route();
}

// editChanges turns the draft into the PATCH body and its update mask (only
// the fields that differ from what the endpoint had).
function editChanges(d) {
  const headers = {};
  for (const r of d.headers) {
    const name = r.name.trim();
    if (!name && !r.value) continue;
    if (Object.hasOwn(headers, name)) throw new Error(`Header ${name} is listed twice.`);
    // An existing header keeps its value unless a new one is typed.
    headers[name] = r.value || (r.orig !== undefined ? r.old : '');
  }
  const rate = d.rate.trim() === '' ? 0 : Number(d.rate);
  if (!Number.isInteger(rate) || rate < 0) throw new Error('Rate limit must be a whole number of requests per second (0: no limit).');
  const body = {};
  const mask = [];
  const o = d.orig;
  if (d.url.trim() !== o.url) { body.url = d.url.trim(); mask.push('url'); }
  if (d.description !== o.description) { body.description = d.description; mask.push('description'); }
  const sameTypes = d.eventTypes.length === o.eventTypes.length && d.eventTypes.every((t) => o.eventTypes.includes(t));
  if (!sameTypes) { body.eventTypes = d.eventTypes; mask.push('event_types'); }
  const sameHeaders = Object.keys(headers).length === Object.keys(o.headers).length
    && Object.entries(headers).every(([k, v]) => Object.hasOwn(o.headers, k) && o.headers[k] === v);
  if (!sameHeaders) { body.headers = headers; mask.push('headers'); }
  if (rate !== o.rate) { body.rateLimitPerSecond = rate; mask.push('rate_limit_per_second'); }
  return { body, mask };
}

async function saveEdit(form, e) {
  const d = state.edit;
  const err = form.querySelector('.error');
  const button = form.querySelector('button[type=submit]');
  err.textContent = '';
  let change;
  try {
    change = editChanges(d);
  } catch (x) {
    err.textContent = x.message;
    return;
  }
  if (!change.mask.length) {
    err.textContent = 'Nothing changed.';
    return;
  }
  button.disabled = true;
  try {
    await api('PATCH', `/v1/endpoints/${encodeURIComponent(e.id)}${q({ updateMask: change.mask.join(',') })}`, change.body);
  } catch (x) {
    err.textContent = x.message; // the API's own words (e.g. a reserved header)
    button.disabled = false;
    return;
  }
  state.edit = null;
  state.notices.set(e.id, { ok: true, nodes: [h('strong', {}, 'Endpoint updated'), ` (${change.mask.join(', ')}).`] });
  state.focus = `edit-${e.id}`;
  route(); // reload the list: what is shown is what the API now has
}

function editEndpointForm(e, types) {
  const d = state.edit;
  const id = e.id;
  const known = new Set(types.map((t) => t.name));
  // Subscriptions the catalogue does not list ("transcription.*", "*") stay
  // editable too.
  const extra = d.orig.eventTypes.filter((t) => !known.has(t));
  const typeBox = (name, desc, i) => h('label', { class: 'check' },
    h('input', {
      type: 'checkbox', id: `edit-${id}-type-${i}`, name: 'editEventTypes', value: name, checked: d.eventTypes.includes(name),
      onchange: (ev) => {
        d.eventTypes = d.eventTypes.filter((t) => t !== name);
        if (ev.currentTarget.checked) d.eventTypes.push(name);
      },
    }),
    h('span', {}, h('code', {}, name), desc ? h('span', { class: 'muted small' }, ` ${desc}`) : null));
  const rows = h('div', { class: 'header-rows' }, d.headers.map((r, i) => headerRow(d, r, i + 1)));
  const form = h('form', {
    class: 'edit-endpoint', 'aria-label': `Edit ${e.url}`, novalidate: true,
    onsubmit: (ev) => { ev.preventDefault(); saveEdit(form, e); },
  },
  h('h4', {}, 'Edit endpoint'),
  h('label', { for: `edit-url-${id}` }, 'URL'),
  h('input', { id: `edit-url-${id}`, 'data-key': `edit-url-${id}`, type: 'url', value: d.url, required: true, oninput: (ev) => { d.url = ev.currentTarget.value; } }),
  h('label', { for: `edit-desc-${id}` }, 'Description'),
  h('input', { id: `edit-desc-${id}`, type: 'text', value: d.description, oninput: (ev) => { d.description = ev.currentTarget.value; } }),
  h('fieldset', {},
    h('legend', {}, 'Events to send'),
    h('div', { class: 'checks' },
      types.map((t, i) => typeBox(t.name, t.description, i)),
      extra.map((t, i) => typeBox(t, t === '*' ? 'every event type' : 'a whole category', types.length + i)))),
  h('fieldset', {},
    h('legend', {}, 'Custom headers'),
    h('p', { class: 'muted small' }, 'Sent with every delivery. Saved values are not shown: leave a value empty to keep it.'),
    rows,
    h('button', {
      type: 'button', 'data-key': `add-header-${id}`,
      onclick: () => {
        d.headers.push({ n: ++d.rows, name: '', value: '' });
        state.focus = `edit-${id}-hname-${d.rows}`;
        route();
      },
    }, 'Add header')),
  h('label', { for: `edit-rate-${id}` }, 'Rate limit (requests per second; 0: no limit)'),
  h('input', { id: `edit-rate-${id}`, type: 'number', min: 0, max: 10000, step: 1, inputmode: 'numeric', value: d.rate, oninput: (ev) => { d.rate = ev.currentTarget.value; } }),
  h('p', { class: 'error', role: 'alert', 'data-testid': 'edit-error' }),
  h('div', { class: 'actions' },
    h('button', { type: 'submit', class: 'primary', 'data-key': `save-edit-${id}` }, 'Save changes'),
    h('button', { type: 'button', 'data-key': `cancel-edit-${id}`, onclick: () => toggleEdit(e) }, 'Cancel')));
  return form;
}

function headerRow(d, r, pos) {
  const id = `edit-${d.id}-h${r.n}`;
  const removeLabel = () => `Remove header ${pos}${r.name.trim() ? ` (${r.name.trim()})` : ''}`;
  const remove = h('button', {
    type: 'button', class: 'danger-outline', 'aria-label': removeLabel(),
    onclick: () => {
      d.headers = d.headers.filter((x) => x !== r);
      state.focus = `add-header-${d.id}`;
      route();
    },
  }, 'Remove');
  return h('div', { class: 'header-row' },
    h('span', { class: 'field' },
      h('label', { for: `${id}-name` }, `Header ${pos} name`),
      h('input', { id: `${id}-name`, 'data-key': `edit-${d.id}-hname-${r.n}`, type: 'text', value: r.name, autocomplete: 'off', spellcheck: 'false', placeholder: 'X-Custom-Header', oninput: (ev) => { r.name = ev.currentTarget.value; remove.setAttribute('aria-label', removeLabel()); } })),
    h('span', { class: 'field' },
      h('label', { for: `${id}-value` }, `Header ${pos} value`),
      h('input', { id: `${id}-value`, type: 'text', value: r.value, autocomplete: 'off', spellcheck: 'false', placeholder: r.orig !== undefined ? 'unchanged (hidden)' : '', oninput: (ev) => { r.value = ev.currentTarget.value; } })),
    remove);
}

// ---- replay ---------------------------------------------------------------

// localInput formats a time for <input type=datetime-local> (local time).
function localInput(t) {
  const d = new Date(t);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function toggleReplay(id) {
  state.replayOpen = state.replayOpen === id ? '' : id;
  state.focus = state.replayOpen ? `replay-since-${id}` : `replay-${id}`;
  route();
}

function replayForm(e) {
  const id = e.id;
  const since = h('input', {
    id: `replay-since-${id}`, 'data-key': `replay-since-${id}`, type: 'datetime-local', required: true,
    value: localInput(Date.now() - DAY_MS), max: localInput(Date.now()),
  });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', {
    class: 'replay-form', 'aria-label': `Replay ${e.url}`,
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const t = new Date(since.value);
      if (!since.value || isNaN(t)) {
        err.textContent = 'Pick a date and time.';
        since.focus();
        return;
      }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        await startReplay(e, t.toISOString());
      } catch (x) {
        err.textContent = x.message;
        button.disabled = false;
        return;
      }
      state.replayOpen = '';
      state.focus = `replay-${id}`;
      route();
    },
  },
  h('h4', {}, 'Replay failed deliveries'),
  h('label', { for: `replay-since-${id}` }, 'Re-send failed deliveries created since'),
  since,
  h('p', { class: 'muted small' }, 'Failed and parked deliveries of this endpoint created since then get a fresh round of attempts. ',
    'Delivered ones are not sent again.',
    epStatus(e) === 'ACTIVE' ? '' : ' This endpoint is not active: they wait (parked) until you activate it.'),
  err,
  h('div', { class: 'actions' },
    h('button', { type: 'submit', class: 'primary', 'data-key': `start-replay-${id}` }, 'Start replay'),
    h('button', { type: 'button', onclick: () => toggleReplay(id) }, 'Cancel')));
  return form;
}

// listDeliveries pages through a filtered delivery list, up to a bound.
async function listDeliveries(params) {
  const all = [];
  let token = '';
  for (let i = 0; i < CHART_PAGES; i++) {
    const r = await api('GET', `/v1/deliveries${q({ ...params, pageSize: 100, pageToken: token })}`);
    all.push(...(r.deliveries || []));
    token = r.nextPageToken || '';
    if (!token) break;
  }
  return all;
}

// startReplay asks the API to replay and tracks the progress of what it
// re-sends. The answer only says how many were queued, so the deliveries
// that were failed or parked just before are followed in the deliveries
// list (ListDeliveries shows a replay's progress).
async function startReplay(e, since) {
  const base = { endpointId: e.id, startTime: since };
  const [failed, parked] = await Promise.all([
    listDeliveries({ ...base, status: 'DELIVERY_STATUS_FAILED' }),
    listDeliveries({ ...base, status: 'DELIVERY_STATUS_PARKED' }),
  ]);
  const r = await api('POST', `/v1/endpoints/${encodeURIComponent(e.id)}:replay`, { since });
  const tracker = {
    since, queued: Number(r.queued || 0), at: Date.now(),
    ids: new Set([...failed, ...parked].map((d) => d.id)), statuses: new Map(), done: false, error: '',
  };
  state.replays.set(e.id, tracker);
  await pollReplay(e.id, tracker);
  scheduleReplayPoll();
}

const FINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);

async function pollReplay(endpointId, t) {
  if (!t.queued || !t.ids.size) {
    t.done = true;
    return;
  }
  try {
    const list = await listDeliveries({ endpointId, startTime: t.since });
    for (const d of list) if (t.ids.has(d.id)) t.statuses.set(d.id, dlStatus(d));
    t.error = '';
  } catch (x) {
    t.error = x.message;
  }
  t.done = t.statuses.size === t.ids.size && [...t.statuses.values()].every((s) => FINAL.has(s));
}

// The progress is refreshed in place every 2 s while a replay is under way
// and the webhooks page is shown; nothing else on the page is re-rendered.
function scheduleReplayPoll() {
  clearTimeout(state.replayTimer);
  if (![...state.replays.values()].some((t) => !t.done)) return;
  state.replayTimer = setTimeout(async () => {
    const onPage = !location.hash || location.hash.startsWith('#/webhooks');
    if (onPage && state.key) {
      for (const [id, t] of state.replays) {
        if (t.done) continue;
        await pollReplay(id, t);
        const slot = main.querySelector(`[data-replay-for="${CSS.escape(id)}"]`);
        if (!slot) continue;
        const nodes = replayNodes(id);
        const text = nodes.map((n) => n.textContent).join('');
        if (text === slot.textContent) continue; // no news: keep the live region quiet
        const focused = document.activeElement?.dataset?.key;
        slot.replaceChildren(...nodes);
        const el = focused && slot.querySelector(`[data-key="${CSS.escape(focused)}"]`);
        if (el) el.focus();
      }
    }
    scheduleReplayPoll();
  }, 2000);
}

function replayNodes(id) {
  const t = state.replays.get(id);
  if (!t) return [];
  const when = fmtTime(t.since);
  const hide = h('button', { type: 'button', class: 'small-button', 'data-key': `hide-replay-${id}`, onclick: () => { state.replays.delete(id); state.focus = `replay-${id}`; route(); } }, 'Hide');
  if (!t.queued) {
    return [h('div', { class: 'notice ok', 'data-testid': 'replay' },
      h('strong', {}, 'Replay: nothing to re-send.'), ` No failed or parked deliveries since ${when} (0 queued). `, hide)];
  }
  const count = { SUCCEEDED: 0, FAILED: 0, CANCELED: 0, PARKED: 0, PENDING: 0 };
  for (const s of t.statuses.values()) count[s] = (count[s] || 0) + 1;
  const total = t.ids.size;
  const finished = count.SUCCEEDED + count.FAILED + count.CANCELED;
  const parts = [
    `${count.SUCCEEDED} delivered`,
    `${count.PENDING} in progress`,
    count.PARKED ? `${count.PARKED} parked (endpoint not active)` : null,
    count.FAILED ? `${count.FAILED} failed again` : null,
    count.CANCELED ? `${count.CANCELED} canceled` : null,
  ].filter(Boolean);
  return [h('div', { class: `notice ${count.FAILED ? 'bad' : 'ok'}`, 'data-testid': 'replay' },
    h('p', {}, h('strong', {}, `Replay started: ${t.queued} ${t.queued === 1 ? 'delivery' : 'deliveries'} queued`), ` (failed or parked since ${when}).`),
    total ? [
      h('p', { class: 'replay-progress' },
        h('progress', { max: total, value: finished, 'aria-label': 'Replay progress' }),
        h('span', { 'data-testid': 'replay-progress' }, ` ${finished} of ${total} finished: ${parts.join(' · ')}`,
          t.done ? '. Done.' : '')),
    ] : null,
    t.error ? h('p', { class: 'error' }, `Progress unavailable: ${t.error}`) : null,
    h('p', { class: 'small' },
      h('a', { href: '#/monitoring', 'data-key': `replay-monitoring-${id}`, onclick: () => { state.filters = { endpointId: id, status: '', eventType: '' }; state.pages = ['']; } }, 'Show these deliveries'),
      ' · ', hide))];
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
