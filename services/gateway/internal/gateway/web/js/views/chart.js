// The 24-hour chart of an endpoint's card: hourly stacked bars of delivered
// (green) and failing (red) deliveries.

import { dlStatus, h } from '../dom.js';

const W = 240;
const H = 48;
const HOUR_MS = 3600 * 1000;

export function chart(deliveries, label) {
  const now = Date.now();
  const ok = new Array(24).fill(0);
  const bad = new Array(24).fill(0);
  for (const d of deliveries) {
    const t = new Date(d.updateTime || d.createTime).getTime();
    const slot = 23 - Math.floor((now - t) / HOUR_MS);
    if (slot < 0 || slot > 23) continue;
    const st = dlStatus(d);
    if (st === 'SUCCEEDED') ok[slot]++;
    else if (st === 'FAILED' || st === 'PARKED' || (st === 'PENDING' && d.attemptCount > 0)) bad[slot]++;
  }
  const okSum = ok.reduce((a, b) => a + b, 0);
  const badSum = bad.reduce((a, b) => a + b, 0);
  const max = Math.max(1, ...ok.map((v, i) => v + bad[i]));
  const bw = W / 24;
  const bars = [];
  for (let i = 0; i < 24; i++) {
    const hOk = (ok[i] / max) * H;
    const hBad = (bad[i] / max) * H;
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
