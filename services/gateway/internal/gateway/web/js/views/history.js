// History: search the whole retention (live and archived events) by
// uploadId or event id, with each event's deliveries; and charts of the
// last 24 h (deliveries per minute by outcome, attempt latency p50/p99),
// for the account or one endpoint, from the per-minute rollups behind
// GET /v1/stats/deliveries (never a scan of raw attempts).

import { endpoints, get, listAll, query } from '../api.js';
import { badge, dlStatus, fmtTime, h, swap } from '../dom.js';
import { reload } from '../router.js';
import { onSessionChange } from '../session.js';

let search = '';
let chartEndpoint = '';

onSessionChange(() => {
  search = '';
  chartEndpoint = '';
});

const MINUTES = 24 * 60;
const W = MINUTES; // one unit per minute
const H = 80;

// findEvents answers the search: one event by id, or every event of an
// upload (up to 5 pages of 100), newest first.
async function findEvents(term) {
  if (/^evt_[0-9A-Z]{26}$/.test(term)) {
    try {
      return [(await get(`/v1/events/${encodeURIComponent(term)}`)).event];
    } catch (e) {
      if (e.status === 404) return [];
      throw e;
    }
  }
  return (await listAll('/v1/events', 'events', { uploadId: term }, { maxPages: 5 })).items;
}

function eventBlock(ev, dls) {
  return h('article', { class: 'card history-event', 'data-event': ev.id },
    h('h3', {}, ev.type, ' ', h('code', { class: 'small' }, ev.id)),
    h('p', { class: 'muted small' }, fmtTime(ev.createTime), ` · ${ev.deliveryCount} deliveries`),
    h('pre', { class: 'payload' }, ev.payload),
    dls.length
      ? h('ul', { class: 'history-deliveries' }, dls.map((d) => h('li', {},
        badge(dlStatus(d)), ' ', h('a', { href: `#/deliveries/${encodeURIComponent(d.id)}` }, d.id),
        h('span', { class: 'muted small' }, ` → ${d.endpointId}`))))
      : h('p', { class: 'muted small' }, 'No deliveries listed.'));
}

// svgChart draws points (one per minute, oldest first): stacked bars of
// succeeded / HTTP error / network error per minute, and the p50 and p99
// latency lines on their own scale.
function svgChart(points, label) {
  const total = (p) => Number(p.succeeded) + Number(p.httpError) + Number(p.networkError);
  const max = Math.max(1, ...points.map(total));
  const maxLat = Math.max(1, ...points.map((p) => p.latencyP99Ms || 0));
  const bars = [];
  points.forEach((p, i) => {
    let y = H;
    for (const [v, cls] of [[Number(p.succeeded), 'bar-ok'], [Number(p.httpError), 'bar-bad'], [Number(p.networkError), 'bar-net']]) {
      if (!v) continue;
      const hh = (v / max) * H;
      y -= hh;
      // 3 minutes wide, so a lone minute stays visible at any width.
      bars.push(h('rect', { x: i - 1, y, width: 3, height: hh, class: cls }));
    }
  });
  // A line through the minutes with attempts, and a mark on each (a lone
  // minute has no line).
  const line = (field, cls) => {
    const pts = points.map((p, i) => (p[field] ? [i, H - (p[field] / maxLat) * (H - 4) - 2] : null)).filter(Boolean);
    if (!pts.length) return null;
    return [h('polyline', { points: pts.map(([x, y]) => `${x},${y}`).join(' '), class: cls, fill: 'none' }),
      pts.map(([x, y]) => h('rect', { x: x - 2, y: y - 2, width: 5, height: 4, class: `${cls}-mark` }))];
  };
  const sum = (f) => points.reduce((a, p) => a + Number(p[f]), 0);
  const withLat = points.filter((p) => p.latencyP50Ms);
  const p50 = withLat.length ? Math.max(...withLat.map((p) => p.latencyP50Ms)) : 0;
  const p99 = withLat.length ? Math.max(...withLat.map((p) => p.latencyP99Ms)) : 0;
  const summary = `Last 24 hours: ${sum('succeeded')} succeeded, ${sum('httpError')} HTTP errors, ${sum('networkError')} network errors`;
  return h('figure', { class: 'chart chart-wide', 'data-chart': label },
    h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${summary} (${label})`, preserveAspectRatio: 'none' },
      h('rect', { x: 0, y: 0, width: W, height: H, class: 'bar-bg' }), bars),
    h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Attempt latency, worst minute p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (${label})`, preserveAspectRatio: 'none', class: 'latency' },
      h('rect', { x: 0, y: 0, width: W, height: H, class: 'bar-bg' }), line('latencyP50Ms', 'lat-p50'), line('latencyP99Ms', 'lat-p99')),
    h('figcaption', { class: 'small' },
      h('span', { class: 'key key-ok' }), `${sum('succeeded')} succeeded `,
      h('span', { class: 'key key-bad' }), `${sum('httpError')} HTTP errors `,
      h('span', { class: 'key key-net' }), `${sum('networkError')} network errors per minute · `,
      h('span', { class: 'key key-p50' }), `p50 `, h('span', { class: 'key key-p99' }), `p99 latency (worst minute ${p99.toFixed(1)} ms) · last 24 h`));
}

export async function renderHistory(ctx) {
  const until = new Date();
  const since = new Date(until.getTime() - MINUTES * 60 * 1000);
  const term = search;
  const [eps, stats, found] = await Promise.all([
    endpoints(),
    get(`/v1/stats/deliveries${query({ endpointId: chartEndpoint, since: since.toISOString(), until: until.toISOString() })}`),
    term ? findEvents(term) : Promise.resolve(null),
  ]);
  let results = null;
  if (found) {
    const dls = await Promise.all(found.map((ev) =>
      listAll('/v1/deliveries', 'deliveries', { eventId: ev.id }, { maxPages: 1 }).then((r) => r.items)));
    results = found.length
      ? found.map((ev, i) => eventBlock(ev, dls[i]))
      : [h('p', { class: 'muted', 'data-key': 'no-results' }, `No event found for ${term} in the retention.`)];
  }
  if (!ctx.current()) return;
  const form = h('form', {
    class: 'search', role: 'search',
    onsubmit: (ev) => {
      ev.preventDefault();
      search = ev.currentTarget.elements.term.value.trim();
      reload();
    },
  },
  h('label', { for: 'history-term' }, 'Upload id or event id'),
  h('input', { id: 'history-term', name: 'term', value: term, placeholder: 'upl_123 or evt_…', 'data-key': 'history-term' }),
  h('button', { type: 'submit' }, 'Search'));
  const pick = h('select', {
    id: 'chart-endpoint', 'data-key': 'chart-endpoint',
    onchange: (ev) => { chartEndpoint = ev.currentTarget.value; reload(); },
  }, h('option', { value: '' }, 'All endpoints'), eps.map((e) => h('option', { value: e.id, selected: e.id === chartEndpoint }, e.url)));
  const label = chartEndpoint ? (eps.find((e) => e.id === chartEndpoint)?.url || chartEndpoint) : 'all endpoints';
  swap(ctx.main,
    h('h1', {}, 'History'),
    h('section', { 'aria-labelledby': 'charts-h' },
      h('h2', { id: 'charts-h' }, 'Deliveries, last 24 hours'),
      h('span', { class: 'field' }, h('label', { for: 'chart-endpoint' }, 'Endpoint'), pick),
      svgChart(stats.points || [], label),
      h('p', { class: 'muted small' }, 'Attempts count once their delivery ended (seconds after its last attempt).')),
    h('section', { 'aria-labelledby': 'search-h' },
      h('h2', { id: 'search-h' }, 'Search events'),
      form,
      results ? h('div', { class: 'history-results' }, results) : null));
}
