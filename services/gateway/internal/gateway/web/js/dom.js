// DOM helpers: element builders, re-rendering that keeps focus and what was
// typed, the page alert, and formatting. Every piece of text from the API or
// a receiver goes into the page as a text node or an attribute value, never
// as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';
const SVG_TAGS = new Set(['svg', 'g', 'rect', 'line', 'polyline', 'title', 'text']);

// h(tag, attrs, ...children) builds an element: "on…" attributes become
// listeners, true is an empty attribute, false/null/undefined leave it out;
// children are nodes or text, nested arrays allowed, null/false skipped.
export function h(tag, attrs, ...children) {
  const el = SVG_TAGS.has(tag) ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let pendingFocus = '';

// focusAfterRender(key) moves focus to the element with that data-key after
// the next swap (e.g. Cancel of a confirmation that just opened).
export function focusAfterRender(key) {
  pendingFocus = key;
}

// What the user typed into a form survives a re-render (a reload after an
// action elsewhere on the page); a form reset after submit clears it.
const fieldKey = (i) => (i.id || `${i.name}=${i.value}`);
const edited = (i) => {
  if (i.tagName === 'SELECT') return [...i.options].some((o) => o.selected !== o.defaultSelected);
  return i.type === 'checkbox' ? i.checked !== i.defaultChecked : i.value !== i.defaultValue;
};
const FIELDS = 'form input, form select';

// swap replaces a container's content, keeping keyboard focus on the
// element with the same data-key (auto-refresh must not steal focus), open
// <details> with a data-key open, and typed form input.
export function swap(container, ...nodes) {
  const focused = document.activeElement?.closest?.('[data-key]');
  const key = pendingFocus || (focused && container.contains(focused) ? focused.dataset.key : '');
  pendingFocus = '';
  const open = [...container.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key);
  const typed = [...container.querySelectorAll(FIELDS)].filter(edited)
    .map((i) => [fieldKey(i), i.type === 'checkbox' ? i.checked : i.value]);
  container.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
  for (const k of open) {
    const d = container.querySelector(`details[data-key="${CSS.escape(k)}"]`);
    if (d) d.open = true;
  }
  const fields = new Map([...container.querySelectorAll(FIELDS)].map((i) => [fieldKey(i), i]));
  for (const [k, v] of typed) {
    const i = fields.get(k);
    if (i && i.type === 'checkbox') i.checked = v;
    else if (i) i.value = v;
  }
  const el = key && container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (el) (el.tagName === 'DETAILS' ? el.querySelector('summary') : el).focus();
}

// showAlert shows the page-wide message ('' hides it).
export function showAlert(msg) {
  const el = document.getElementById('alert');
  el.hidden = !msg;
  el.textContent = msg || '';
}

export const badge = (text) => h('span', { class: `badge badge-${text.toLowerCase()}` }, text);

// ---- formatting -----------------------------------------------------------

// safeHref lets only http(s) links from the API into href attributes.
export const safeHref = (u) => (/^https?:\/\//i.test(u || '') ? u : null);

const short = (v, prefix) => (v || '').replace(prefix, '') || 'UNKNOWN';
export const epStatus = (e) => short(e.status, 'ENDPOINT_STATUS_');

// Endpoint orderings: the API's enum values, and how the dashboard names
// them. An endpoint without one (UNSPECIFIED) is unordered.
export const ORDERED = 'ENDPOINT_ORDERING_ORDERED_BY_KEY';
export const UNORDERED = 'ENDPOINT_ORDERING_UNORDERED';
export const epOrdering = (e) => (e.ordering === ORDERED ? ORDERED : UNORDERED);
export const orderingName = (o) => (o === ORDERED ? 'Ordered by key' : 'Unordered');

// orderingField is the labelled Ordering select with its hint; onchange
// gets the chosen value.
export function orderingField(id, name, value, onchange) {
  return [
    h('label', { for: id }, 'Ordering'),
    h('select', { id, name, 'data-key': id, 'aria-describedby': `${id}-hint`, onchange: onchange && ((ev) => onchange(ev.currentTarget.value)) },
      [UNORDERED, ORDERED].map((o) => h('option', { value: o, selected: o === value }, orderingName(o)))),
    h('p', { id: `${id}-hint`, class: 'muted small' },
      'Ordered by key: events that share an ordering key (the event\'s orderingKey, else its upload, else the account) arrive one at a time, in publish order; a failing event holds back only its own key. Applies to events published after the change.'),
  ];
}
export const dlStatus = (d) => short(d.status, 'DELIVERY_STATUS_');
export const errType = (t) => (t && t !== 'ERROR_TYPE_UNSPECIFIED' ? t.replace('ERROR_TYPE_', '').toLowerCase() : '');

export function fmtTime(iso) {
  if (!iso) return '—';
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleString();
}

// fmtNext tells when a pending delivery's next attempt is due.
export function fmtNext(d) {
  if (!d.nextAttemptTime || dlStatus(d) !== 'PENDING') return '—';
  const s = Math.round((new Date(d.nextAttemptTime) - Date.now()) / 1000);
  const when = new Date(d.nextAttemptTime).toLocaleTimeString();
  if (s <= 0) return `due now (${when})`;
  const rel = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  return `in ${rel} (${when})`;
}

// localInput formats a time for <input type=datetime-local> (local time).
export function localInput(t) {
  const d = new Date(t);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
