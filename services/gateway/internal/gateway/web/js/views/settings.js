// The account's notification settings (a form on the webhooks page).

import { get, patch } from '../api.js';
import { h } from '../dom.js';

export function settingsForm(s) {
  const msg = h('p', { role: 'status', class: 'muted' });
  const form = h('form', {
    class: 'card', 'aria-labelledby': 'settings-h',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const body = { notificationEmail: fd.get('notificationEmail').trim(), creditsLowThreshold: Number(fd.get('creditsLowThreshold') || 0) };
      try {
        await patch('/v1/settings', body);
        const fresh = (await get('/v1/settings')).settings || {};
        const { notificationEmail: email, creditsLowThreshold: threshold } = form.elements;
        email.defaultValue = email.value = fresh.notificationEmail || '';
        threshold.defaultValue = threshold.value = String(fresh.creditsLowThreshold ?? 0);
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
