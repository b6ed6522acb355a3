// Sign-in: the form that takes an API key. The key is tried against the API
// before it becomes the session's; a refusal shows the API's message here.

import { request } from '../api.js';
import { h } from '../dom.js';
import { signIn } from '../session.js';

export function renderSignIn(main) {
  const input = h('input', { id: 'api-key', name: 'apiKey', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const err = h('p', { class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', {
    class: 'card narrow',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      err.textContent = '';
      button.disabled = true;
      try {
        await request('GET', '/v1/endpoints?pageSize=1', undefined, { key });
      } catch (e) {
        err.textContent = e.message;
        button.disabled = false;
        input.focus();
        return;
      }
      if (!location.hash) location.hash = '#/webhooks';
      signIn(key);
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'Paste an API key of your account. It is kept for this browser tab only.'),
  h('label', { for: 'api-key' }, 'API key'), input, err,
  button);
  main.replaceChildren(form);
  input.focus();
}
