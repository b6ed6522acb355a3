// Replay: the form that re-sends an endpoint's failed and parked deliveries
// since a time, and the progress of each replay started in this session.

import { deliveries, post } from '../api.js';
import { dlStatus, epStatus, fmtTime, focusAfterRender, h, localInput } from '../dom.js';
import { reload } from '../router.js';
import { onSessionChange, signedIn } from '../session.js';
import { showEndpointDeliveries } from './monitoring.js';

const DAY_MS = 24 * 3600 * 1000;
const POLL_MS = 2000;
const FINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);

let openFor = ''; // endpoint id whose replay form is open
const replays = new Map(); // endpoint id → tracker (see start)
let timer = 0;

onSessionChange(() => {
  openFor = '';
  replays.clear();
  clearTimeout(timer);
});

export const isReplayOpen = (id) => openFor === id;

export function toggleReplay(id) {
  openFor = openFor === id ? '' : id;
  focusAfterRender(openFor ? `replay-since-${id}` : `replay-${id}`);
  reload();
}

export function replayForm(e) {
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
      if (!since.value || Number.isNaN(t.getTime())) {
        err.textContent = 'Pick a date and time.';
        since.focus();
        return;
      }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        await start(e, t.toISOString());
      } catch (x) {
        err.textContent = x.message;
        button.disabled = false;
        return;
      }
      openFor = '';
      focusAfterRender(`replay-${id}`);
      reload();
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

// start asks the API to replay and tracks the progress of what it re-sends.
// The answer only says how many were queued, so the deliveries that were
// failed or parked just before are followed in the deliveries list
// (ListDeliveries shows a replay's progress).
async function start(e, since) {
  const base = { endpointId: e.id, startTime: since };
  const [failed, parked] = await Promise.all([
    deliveries({ ...base, status: 'DELIVERY_STATUS_FAILED' }),
    deliveries({ ...base, status: 'DELIVERY_STATUS_PARKED' }),
  ]);
  const r = await post(`/v1/endpoints/${encodeURIComponent(e.id)}:replay`, { since });
  const tracker = {
    since, queued: Number(r.queued || 0),
    ids: new Set([...failed.items, ...parked.items].map((d) => d.id)), statuses: new Map(), done: false, error: '',
  };
  replays.set(e.id, tracker);
  await poll(e.id, tracker);
  schedulePoll();
}

async function poll(endpointId, t) {
  if (!t.queued || !t.ids.size) {
    t.done = true;
    return;
  }
  try {
    const { items } = await deliveries({ endpointId, startTime: t.since });
    for (const d of items) if (t.ids.has(d.id)) t.statuses.set(d.id, dlStatus(d));
    t.error = '';
  } catch (x) {
    t.error = x.message;
  }
  t.done = t.statuses.size === t.ids.size && [...t.statuses.values()].every((s) => FINAL.has(s));
}

// The progress is refreshed in place every 2 s while a replay is under way
// and the webhooks page is shown; nothing else on the page is re-rendered.
function schedulePoll() {
  clearTimeout(timer);
  if (![...replays.values()].some((t) => !t.done)) return;
  timer = setTimeout(async () => {
    const onPage = !location.hash || location.hash.startsWith('#/webhooks');
    if (onPage && signedIn()) {
      for (const [id, t] of replays) {
        if (t.done) continue;
        await poll(id, t);
        const slot = document.querySelector(`[data-replay-for="${CSS.escape(id)}"]`);
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
    schedulePoll();
  }, POLL_MS);
}

// replayNodes is the content of endpoint id's replay slot: the answer and
// the progress of its replay, if one was started.
export function replayNodes(id) {
  const t = replays.get(id);
  if (!t) return [];
  const when = fmtTime(t.since);
  const hide = h('button', { type: 'button', class: 'small-button', 'data-key': `hide-replay-${id}`, onclick: () => { replays.delete(id); focusAfterRender(`replay-${id}`); reload(); } }, 'Hide');
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
      h('a', { href: '#/monitoring', 'data-key': `replay-monitoring-${id}`, onclick: () => showEndpointDeliveries(id) }, 'Show these deliveries'),
      ' · ', hide))];
}
