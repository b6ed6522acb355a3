// API keys: the account's keys (name, prefix, created, last used; never
// the key), a form that creates one (the key is shown once, in memory
// only), and Revoke with a confirmation. The account's last key cannot be
// revoked (the API refuses; the button says so first).

import { del, listAll, post } from '../api.js';
import { fmtTime, focusAfterRender, h, swap } from '../dom.js';
import { reload, run } from '../router.js';
import { apiKey, onSessionChange } from '../session.js';

let created = null; // {name, key}: the new key, shown once
let confirmRevoke = ''; // key id whose Revoke waits for confirmation

onSessionChange(() => {
  created = null;
  confirmRevoke = '';
});

const keyPath = (id) => `/v1/api-keys/${encodeURIComponent(id)}`;

export async function renderKeys(ctx) {
  const { items: keys } = await listAll('/v1/api-keys', 'apiKeys');
  if (!ctx.current()) return;
  const mine = apiKey() || '';
  swap(ctx.main,
    h('h1', {}, 'API keys'),
    h('p', { class: 'muted' }, 'Keys are stored hashed: a key is shown only when it is created. ',
      'A revoked key stops working everywhere within seconds. An account keeps at least one key, at most 20.'),
    created ? newKeyBox(created) : null,
    h('section', { class: 'card', 'aria-labelledby': 'keys-h' },
      h('h2', { id: 'keys-h' }, `Keys (${keys.length})`),
      h('div', { class: 'table-wrap' }, h('table', { class: 'keys' },
        h('thead', {}, h('tr', {}, ['Name', 'Key', 'Created', 'Last used', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, keys.map((k) => keyRow(k, keys.length, mine.startsWith(k.prefix))))))),
    createForm());
}

function keyRow(k, count, current) {
  return h('tr', { 'data-key-id': k.id },
    h('td', {}, k.name, current ? h('span', { class: 'muted small' }, ' (this session)') : null),
    h('td', {}, h('code', {}, `${k.prefix}…`)),
    h('td', {}, fmtTime(k.createTime)),
    h('td', {}, k.lastUsedTime ? fmtTime(k.lastUsedTime) : 'never'),
    h('td', {}, revokeControl(k, count, current)));
}

// revokeControl is Revoke, or, once pressed, the confirmation with focus
// on its Cancel.
function revokeControl(k, count, current) {
  const id = k.id;
  const ask = (keyId, focus) => () => {
    confirmRevoke = keyId;
    focusAfterRender(focus);
    reload();
  };
  if (count <= 1) {
    return h('button', { type: 'button', class: 'danger-outline', disabled: true, title: 'The account\'s last key cannot be revoked: create another first' }, 'Revoke');
  }
  if (confirmRevoke !== id) {
    return h('button', { type: 'button', class: 'danger-outline', 'data-key': `revoke-${id}`, onclick: ask(id, `cancel-revoke-${id}`) }, 'Revoke');
  }
  return h('span', { class: 'confirm', role: 'group', 'aria-label': 'Confirm revoke' },
    `Revoke ${k.name} (${k.prefix}…)? Everything using it is refused from now on.`,
    current ? ' You are signed in with it: you will be signed out. ' : ' ',
    h('button', {
      type: 'button', class: 'danger', 'data-key': `confirm-revoke-${id}`,
      onclick: (ev) => run(ev.currentTarget, async () => {
        confirmRevoke = '';
        await del(keyPath(id));
      }),
    }, 'Yes, revoke'),
    h('button', { type: 'button', 'data-key': `cancel-revoke-${id}`, onclick: ask('', `revoke-${id}`) }, 'Cancel'));
}

function createForm() {
  const form = h('form', {
    class: 'card', 'aria-labelledby': 'newkey-h',
    onsubmit: (ev) => {
      ev.preventDefault();
      const name = new FormData(form).get('name').trim();
      run(form.querySelector('button[type=submit]'), async () => {
        const r = await post('/v1/api-keys', { name });
        created = { name: r.apiKey.name, key: r.key };
        focusAfterRender('copy-key');
      });
    },
  },
  h('h2', { id: 'newkey-h' }, 'Create a key'),
  h('label', { for: 'key-name' }, 'Name (what will use it)'),
  h('input', { id: 'key-name', name: 'name', required: true, maxlength: 100, 'data-key': 'key-name' }),
  h('button', { type: 'submit', class: 'primary', 'data-key': 'create-key' }, 'Create key'));
  return form;
}

function newKeyBox(c) {
  const code = h('code', { class: 'secret-value', 'data-testid': 'new-key' }, c.key);
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  return h('div', { class: 'secret', role: 'region', 'aria-label': 'New API key' },
    h('p', {}, h('strong', {}, `New API key “${c.name}”`), ' — copy it now: it is not shown again.'),
    code,
    h('div', { class: 'actions' },
      h('button', {
        type: 'button', class: 'primary', 'data-key': 'copy-key',
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(c.key);
          } catch {
            const range = document.createRange();
            range.selectNodeContents(code);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
            document.execCommand('copy');
          }
          status.textContent = 'Copied.';
        },
      }, 'Copy key'),
      h('button', { type: 'button', 'data-key': 'hide-key', onclick: () => { created = null; reload(); } }, 'Done, hide it'),
      status));
}
