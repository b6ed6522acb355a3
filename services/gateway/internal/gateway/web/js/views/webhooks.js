// Settings → Webhooks: the endpoint cards (status, 24 h chart, Send test,
// activate/deactivate, edit, replay, rotate secret, delete), the form that
// adds an endpoint, and the notification settings.

import { del, deliveries, endpoints, eventTypes, get, post } from '../api.js';
import { badge, epOrdering, epStatus, errType, fmtTime, focusAfterRender, h, orderingField, orderingName, swap, UNORDERED } from '../dom.js';
import { reload, run } from '../router.js';
import { onSessionChange } from '../session.js';
import { chart } from './chart.js';
import { editForm, isEditing, toggleEdit } from './endpoint-edit.js';
import { showEndpointDeliveries } from './monitoring.js';
import { isReplayOpen, replayForm, replayNodes, toggleReplay } from './replay.js';
import { settingsForm } from './settings.js';

const DAY_MS = 24 * 3600 * 1000;

const notices = new Map(); // endpoint id → {ok, nodes}: the last action's outcome
let secret = null; // {endpointId, url, secret, what}: shown once, memory only
let confirmDelete = ''; // endpoint id whose Delete waits for confirmation

onSessionChange(() => {
  notices.clear();
  secret = null;
  confirmDelete = '';
});

const endpointPath = (id, action = '') => `/v1/endpoints/${encodeURIComponent(id)}${action}`;

export async function renderWebhooks(ctx) {
  const since = new Date(Date.now() - DAY_MS).toISOString();
  const [types, eps, settings, recent] = await Promise.all([
    eventTypes(), endpoints(), get('/v1/settings'), deliveries({ startTime: since }),
  ]);
  if (!ctx.current()) return;
  const byEndpoint = Map.groupBy(recent.items, (d) => d.endpointId);
  swap(ctx.main,
    h('h1', {}, 'Settings → Webhooks'),
    h('section', { 'aria-labelledby': 'endpoints-h' },
      h('h2', { id: 'endpoints-h' }, `Endpoints (${eps.length})`),
      eps.length ? null : h('p', { class: 'muted' }, 'No endpoints yet. Add one below.'),
      h('div', { class: 'endpoints' }, eps.map((e) => endpointCard(e, types, byEndpoint.get(e.id) || []))),
      recent.truncated ? h('p', { class: 'muted' }, `Charts show the latest ${recent.items.length} deliveries only.`) : null),
    addEndpointForm(types),
    settingsForm(settings.settings || {}));
}

function endpointCard(e, types, recent) {
  const status = epStatus(e);
  const id = e.id;
  const testType = h('select', { id: `test-type-${id}`, 'data-key': `test-type-${id}` },
    types.map((t) => h('option', { value: t.name }, t.name)));
  if ((e.eventTypes || []).length) testType.value = e.eventTypes[0];
  const notice = notices.get(id);
  const action = (what, label) => h('button', {
    type: 'button', 'data-key': `${what}-${id}`,
    onclick: (ev) => run(ev.currentTarget, () => post(endpointPath(id, `:${what}`))),
  }, label);
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
    chart(recent, e.url),
    h('div', { class: 'actions' },
      h('span', { class: 'inline-field' },
        h('label', { for: `test-type-${id}`, class: 'sr-only' }, 'Test event type'), testType,
        h('button', { type: 'button', 'data-key': `test-${id}`, onclick: (ev) => sendTest(ev.currentTarget, e, testType.value) }, 'Send test')),
      status === 'ACTIVE' ? action('disable', 'Deactivate') : action('enable', 'Activate'),
      h('button', { type: 'button', 'data-key': `edit-${id}`, 'aria-expanded': String(isEditing(id)), onclick: () => toggleEdit(e) }, 'Edit'),
      h('button', { type: 'button', 'data-key': `replay-${id}`, 'aria-expanded': String(isReplayOpen(id)), onclick: () => toggleReplay(id) }, 'Replay…'),
      h('button', { type: 'button', 'data-key': `rotate-${id}`, onclick: (ev) => rotate(ev.currentTarget, e) }, 'Rotate secret'),
      h('a', { href: '#/monitoring', onclick: () => showEndpointDeliveries(id) }, 'Deliveries'),
      deleteControl(e)),
    h('div', { class: 'notice-slot', 'aria-live': 'polite' },
      notice ? h('div', { class: `notice ${notice.ok ? 'ok' : 'bad'}`, 'data-testid': 'notice' }, notice.nodes) : null),
    isEditing(id) ? editForm(e, types, (mask) => {
      notices.set(id, { ok: true, nodes: [h('strong', {}, 'Endpoint updated'), ` (${mask.join(', ')}).`] });
    }) : null,
    isReplayOpen(id) ? replayForm(e) : null,
    h('div', { class: 'replay-slot', 'data-replay-for': id, 'aria-live': 'polite' }, replayNodes(id)),
    secret?.endpointId === id ? secretBox(secret) : null);
}

// endpointExtras shows the rate limit, the ordering and the names of the
// custom headers (their values may be credentials of the receiver: never
// shown).
function endpointExtras(e) {
  const rate = Number(e.rateLimitPerSecond || 0);
  const names = Object.keys(e.headers || {}).sort((a, b) => a.localeCompare(b));
  return h('p', { class: 'muted small', 'data-testid': 'endpoint-extras' },
    'Rate limit: ', rate > 0 ? `${rate} requests/s` : 'none',
    ' · Ordering: ', h('span', { 'data-testid': 'endpoint-ordering' }, orderingName(epOrdering(e)).toLowerCase()),
    ' · Custom headers: ', names.length ? names.map((n, i) => [i ? ', ' : '', h('code', {}, n)]) : 'none');
}

// deleteControl is Delete, or, once pressed, the confirmation with focus on
// its Cancel.
function deleteControl(e) {
  const id = e.id;
  const ask = (endpointId, focus) => () => {
    confirmDelete = endpointId;
    focusAfterRender(focus);
    reload();
  };
  if (confirmDelete !== id) {
    return h('button', { type: 'button', class: 'danger-outline', 'data-key': `delete-${id}`, onclick: ask(id, `cancel-delete-${id}`) }, 'Delete');
  }
  return h('span', { class: 'confirm', role: 'group', 'aria-label': 'Confirm delete' },
    `Delete ${e.url}? `,
    h('button', {
      type: 'button', class: 'danger', 'data-key': `confirm-delete-${id}`,
      onclick: (ev) => run(ev.currentTarget, async () => {
        confirmDelete = '';
        notices.delete(id);
        await del(endpointPath(id));
      }),
    }, 'Yes, delete'),
    h('button', { type: 'button', 'data-key': `cancel-delete-${id}`, onclick: ask('', `delete-${id}`) }, 'Cancel'));
}

function sendTest(button, e, eventType) {
  return run(button, async () => {
    notices.delete(e.id);
    try {
      const r = await post(endpointPath(e.id, ':sendTest'), { eventType });
      const latency = `${r.latencyMs || 0} ms`;
      const nodes = r.success
        ? [h('strong', {}, `Test delivered: HTTP ${r.statusCode}`), ` in ${latency}.`]
        : [h('strong', {}, 'Test failed'), r.statusCode ? `: HTTP ${r.statusCode}` : '', ` after ${latency}`,
          errType(r.errorType) ? ` (${errType(r.errorType)})` : '', r.error ? ` — ${r.error}` : ''];
      if (r.responseBody) nodes.push(h('details', {}, h('summary', {}, 'Response body'), h('pre', {}, r.responseBody)));
      notices.set(e.id, { ok: r.success, nodes });
    } catch (err) {
      notices.set(e.id, { ok: false, nodes: [h('strong', {}, 'Send test refused: '), err.message] });
    }
  });
}

function rotate(button, e) {
  return run(button, async () => {
    const r = await post(endpointPath(e.id, ':rotateSecret'));
    notices.set(e.id, { ok: true, nodes: ['Secret rotated. The old secret stays valid for the overlap window.'] });
    secret = { endpointId: e.id, url: e.url, secret: r.secret, what: 'New signing secret' };
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
      h('button', { type: 'button', 'data-key': 'hide-secret', onclick: () => { secret = null; reload(); } }, 'Done, hide it'),
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
      body.ordering = fd.get('ordering');
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const r = await post('/v1/endpoints', body);
        secret = { endpointId: r.endpoint.id, url: r.endpoint.url, secret: r.secret, what: 'Signing secret' };
        form.reset();
        reload();
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
  orderingField('new-ordering', 'ordering', UNORDERED),
  h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'paused' }), 'Create inactive (test it first, activate later)'),
  err,
  h('button', { type: 'submit', class: 'primary' }, 'Add endpoint'));
  return form;
}
