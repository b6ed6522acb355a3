// Editing an endpoint: URL, description, event types, custom headers, rate
// limit and ordering. The draft lives here while the form is open; saving sends
// only what changed (PATCH with an update mask).

import { patch, query } from '../api.js';
import { epOrdering, focusAfterRender, h, orderingField } from '../dom.js';
import { reload } from '../router.js';
import { onSessionChange } from '../session.js';

// draft: {id, url, description, eventTypes, headers: [{n, orig?, name,
// value, old?}], rows, rate, ordering, orig} of the endpoint being edited,
// or null.
let draft = null;
onSessionChange(() => { draft = null; });

export const isEditing = (id) => draft?.id === id;

export function toggleEdit(e) {
  if (isEditing(e.id)) {
    draft = null;
    focusAfterRender(`edit-${e.id}`);
  } else {
    const headers = Object.entries(e.headers || {}).sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value], n) => ({ n, orig: name, name, value: '', old: value }));
    draft = {
      id: e.id, url: e.url || '', description: e.description || '', eventTypes: [...(e.eventTypes || [])],
      rate: String(Number(e.rateLimitPerSecond || 0)), headers, rows: headers.length, ordering: epOrdering(e),
      orig: { url: e.url || '', description: e.description || '', eventTypes: [...(e.eventTypes || [])], headers: { ...(e.headers || {}) }, rate: Number(e.rateLimitPerSecond || 0), ordering: epOrdering(e) },
    };
    focusAfterRender(`edit-url-${e.id}`);
  }
  reload();
}

// changes turns the draft into the PATCH body and its update mask (only the
// fields that differ from what the endpoint had).
function changes(d) {
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
  if (d.ordering !== o.ordering) { body.ordering = d.ordering; mask.push('ordering'); }
  return { body, mask };
}

async function save(form, e, onSaved) {
  const err = form.querySelector('.error');
  const button = form.querySelector('button[type=submit]');
  err.textContent = '';
  let change;
  try {
    change = changes(draft);
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
    await patch(`/v1/endpoints/${encodeURIComponent(e.id)}${query({ updateMask: change.mask.join(',') })}`, change.body);
  } catch (x) {
    err.textContent = x.message; // the API's own words (e.g. a reserved header)
    button.disabled = false;
    return;
  }
  draft = null;
  onSaved(change.mask);
  focusAfterRender(`edit-${e.id}`);
  reload(); // what is shown is what the API now has
}

// editForm is the open form of endpoint e; onSaved(mask) is told what a
// successful save changed.
export function editForm(e, types, onSaved) {
  const d = draft;
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
  const form = h('form', {
    class: 'edit-endpoint', 'aria-label': `Edit ${e.url}`, novalidate: true,
    onsubmit: (ev) => { ev.preventDefault(); save(form, e, onSaved); },
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
    h('div', { class: 'header-rows' }, d.headers.map((r, i) => headerRow(d, r, i + 1))),
    h('button', {
      type: 'button', 'data-key': `add-header-${id}`,
      onclick: () => {
        d.headers.push({ n: ++d.rows, name: '', value: '' });
        focusAfterRender(`edit-${id}-hname-${d.rows}`);
        reload();
      },
    }, 'Add header')),
  h('label', { for: `edit-rate-${id}` }, 'Rate limit (requests per second; 0: no limit)'),
  h('input', { id: `edit-rate-${id}`, type: 'number', min: 0, max: 10000, step: 1, inputmode: 'numeric', value: d.rate, oninput: (ev) => { d.rate = ev.currentTarget.value; } }),
  orderingField(`edit-ordering-${id}`, 'editOrdering', d.ordering, (v) => { d.ordering = v; }),
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
      focusAfterRender(`add-header-${d.id}`);
      reload();
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
