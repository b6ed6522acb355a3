// Audit log: who changed what in the account, newest first (GET
// /v1/audit-log over both tiers): endpoint, secret, API key and settings
// changes, replays and manual retries, each with its time, actor (an API
// key by id and prefix, "admin" or "system"), action, resource and a
// summary. Filter by resource id; "Older" pages on by the last entry's id.

import { get, query } from '../api.js';
import { fmtTime, h, swap } from '../dom.js';
import { reload } from '../router.js';
import { onSessionChange } from '../session.js';

let resource = '';
let pages = ['']; // page tokens read so far; the last is the current page's

onSessionChange(() => {
  resource = '';
  pages = [''];
});

function actor(a) {
  if (!a) return '';
  if (a.type === 'api_key') return h('span', {}, 'API key ', h('code', {}, `${a.keyPrefix}…`), ' ', h('span', { class: 'muted small' }, a.keyId));
  return a.type;
}

export async function renderAudit(ctx) {
  const token = pages[pages.length - 1];
  const r = await get(`/v1/audit-log${query({ resource, pageSize: 50, pageToken: token })}`);
  if (!ctx.current()) return;
  const entries = r.entries || [];
  const form = h('form', {
    class: 'filters', role: 'search',
    onsubmit: (ev) => {
      ev.preventDefault();
      resource = new FormData(form).get('resource').trim();
      pages = [''];
      reload();
    },
  },
  h('label', { for: 'audit-resource' }, 'Resource id'),
  h('input', { id: 'audit-resource', name: 'resource', value: resource, placeholder: 'ep_…, key_…, dlv_…', 'data-key': 'audit-resource' }),
  h('button', { type: 'submit', 'data-key': 'audit-filter' }, 'Filter'));
  swap(ctx.main,
    h('h1', {}, 'Audit log'),
    h('p', { class: 'muted' }, 'Every change to endpoints, secrets, API keys and settings, and every replay and manual retry, with who made it. Secrets and keys are never recorded.'),
    form,
    h('section', { class: 'card', 'aria-labelledby': 'audit-h' },
      h('h2', { id: 'audit-h' }, entries.length ? `Entries (${entries.length} on this page)` : 'No entries'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'audit' },
        h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Resource', 'Summary'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, entries.map((e) => h('tr', { 'data-audit': e.id },
          h('td', {}, fmtTime(e.time)),
          h('td', {}, actor(e.actor)),
          h('td', {}, h('code', {}, e.action)),
          h('td', {}, h('code', { class: 'small' }, e.resource)),
          h('td', {}, e.summary || '')))))),
      h('div', { class: 'actions' },
        pages.length > 1 ? h('button', { type: 'button', 'data-key': 'audit-newer', onclick: () => { pages.pop(); reload(); } }, 'Newer') : null,
        r.nextPageToken ? h('button', { type: 'button', 'data-key': 'audit-older', onclick: () => { pages.push(r.nextPageToken); reload(); } }, 'Older') : null)));
}
