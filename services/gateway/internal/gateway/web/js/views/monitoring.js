// Monitoring: the deliveries list (filters, paging, auto-refresh) and one
// delivery's detail (payload, attempt timeline, Resend now).

import { deliveries, endpoints, eventTypes, get, post } from '../api.js';
import { badge, dlStatus, errType, fmtNext, fmtTime, h, safeHref, swap } from '../dom.js';
import { reload, run } from '../router.js';
import { onSessionChange } from '../session.js';

const REFRESH_MS = 3000;
const PAGE_SIZE = 25;
const STATUSES = ['PENDING', 'SUCCEEDED', 'FAILED', 'PARKED', 'CANCELED'];
const NO_FILTERS = { endpointId: '', status: '', eventType: '' };

let filters = NO_FILTERS;
let pages = ['']; // page tokens of the list; the last one is shown
let autoRefresh = true;

onSessionChange(() => {
  filters = NO_FILTERS;
  pages = [''];
});

// showEndpointDeliveries makes the list show endpoint id's deliveries (for
// links to #/monitoring from the webhooks page).
export function showEndpointDeliveries(id) {
  filters = { ...NO_FILTERS, endpointId: id };
  pages = [''];
}

const scheduleRefresh = (ctx) => {
  if (autoRefresh) ctx.refreshIn(REFRESH_MS);
};
// keepTrying: a view that failed to load tries again at the next refresh.
export const keepTrying = scheduleRefresh;

function refreshControls() {
  return h('div', { class: 'refresh' },
    h('button', {
      type: 'button', 'aria-pressed': String(autoRefresh), 'data-key': 'auto-refresh',
      onclick: () => { autoRefresh = !autoRefresh; reload(); },
    }, autoRefresh ? 'Pause auto-refresh' : 'Resume auto-refresh'),
    h('button', { type: 'button', 'data-key': 'refresh-now', onclick: () => reload() }, 'Refresh now'),
    h('span', { class: 'muted small' }, autoRefresh ? `Refreshing every ${REFRESH_MS / 1000} s` : 'Auto-refresh paused'));
}

export async function renderMonitoring(ctx) {
  const f = filters;
  const [types, eps, list] = await Promise.all([
    eventTypes(), endpoints(),
    deliveries({ ...f, pageToken: pages[pages.length - 1] }, { pageSize: PAGE_SIZE, maxPages: 1 }),
  ]);
  if (!ctx.current()) return;
  const urls = new Map(eps.map((e) => [e.id, e.url]));
  const setFilter = (name) => (ev) => {
    filters = { ...filters, [name]: ev.currentTarget.value };
    pages = [''];
    reload();
  };
  const select = (name, label, options) => h('span', { class: 'field' },
    h('label', { for: `filter-${name}` }, label),
    h('select', { id: `filter-${name}`, name, 'data-key': `filter-${name}`, onchange: setFilter(name) },
      h('option', { value: '' }, 'All'),
      options.map(([v, text]) => h('option', { value: v, selected: f[name] === v }, text))));
  swap(ctx.main,
    h('h1', {}, 'Monitoring'),
    h('form', { class: 'filters card', 'aria-label': 'Filter deliveries', onsubmit: (ev) => ev.preventDefault() },
      select('endpointId', 'Endpoint', eps.map((e) => [e.id, e.url])),
      select('status', 'Status', STATUSES.map((s) => [`DELIVERY_STATUS_${s}`, s])),
      select('eventType', 'Event type', types.map((t) => [t.name, t.name]))),
    refreshControls(),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'deliveries' },
        h('caption', { class: 'sr-only' }, 'Deliveries, newest first'),
        h('thead', {}, h('tr', {}, ['Status', 'Event type', 'Endpoint', 'Attempts', 'Last code', 'Next attempt', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, list.items.map((d) => deliveryRow(d, urls))))),
    list.items.length ? null : h('p', { class: 'muted' }, 'No deliveries match.'),
    h('div', { class: 'pager' },
      pages.length > 1 ? h('button', { type: 'button', 'data-key': 'newer', onclick: () => { pages = pages.slice(0, -1); reload(); } }, '← Newer') : null,
      list.nextPageToken ? h('button', { type: 'button', 'data-key': 'older', onclick: () => { pages = [...pages, list.nextPageToken]; reload(); } }, 'Older →') : null));
  scheduleRefresh(ctx);
}

function deliveryRow(d, urls) {
  return h('tr', { 'data-delivery-id': d.id },
    h('td', { 'data-label': 'Status' }, h('span', {}, badge(dlStatus(d)), d.test ? h('span', { class: 'tag' }, 'test') : null)),
    h('td', { 'data-label': 'Event type' }, h('a', { href: `#/deliveries/${encodeURIComponent(d.id)}`, 'data-key': `open-${d.id}` }, d.eventType || '—')),
    h('td', { 'data-label': 'Endpoint', class: 'url' }, urls.get(d.endpointId) || d.endpointId),
    h('td', { 'data-label': 'Attempts' }, String(d.attemptCount || 0)),
    h('td', { 'data-label': 'Last code', title: d.lastError || '' }, d.lastStatusCode ? String(d.lastStatusCode) : (d.lastError ? 'error' : '—')),
    h('td', { 'data-label': 'Next attempt' }, fmtNext(d)),
    h('td', { 'data-label': 'Created' }, fmtTime(d.createTime)));
}

export async function renderDelivery(ctx, id) {
  const [{ delivery: d }, eps] = await Promise.all([get(`/v1/deliveries/${encodeURIComponent(id)}`), endpoints()]);
  if (!ctx.current()) return;
  const url = eps.find((e) => e.id === d.endpointId)?.url || d.endpointId;
  let payload = d.payload || '';
  try {
    payload = JSON.stringify(JSON.parse(payload), null, 2);
  } catch { /* shown as received */ }
  const trace = safeHref(d.traceUrl);
  const row = (k, ...v) => [h('dt', {}, k), h('dd', {}, ...v)];
  swap(ctx.main,
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
          onclick: (ev) => run(ev.currentTarget, () => post(`/v1/deliveries/${encodeURIComponent(d.id)}:retry`)),
        }, 'Resend now'))),
    h('section', { class: 'card', 'aria-labelledby': 'payload-h' },
      h('h2', { id: 'payload-h' }, 'Payload'),
      h('pre', { class: 'payload', tabindex: 0 }, payload || '—')),
    h('section', { 'aria-labelledby': 'attempts-h' },
      h('h2', { id: 'attempts-h' }, 'Attempts'),
      (d.attempts || []).length ? h('ol', { class: 'attempts' }, d.attempts.map((a) => attemptItem(a, d))) : h('p', { class: 'muted' }, 'No attempt yet.')));
  scheduleRefresh(ctx);
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
