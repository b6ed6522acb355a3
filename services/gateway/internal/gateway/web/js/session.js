// The session: the API key of the signed-in account, kept in sessionStorage
// (this browser tab only, never localStorage or a cookie). Modules that keep
// per-account state subscribe to changes and drop it on sign-out.

const KEY_STORAGE = 'voxscriber.apiKey';
const listeners = new Set();

export const apiKey = () => sessionStorage.getItem(KEY_STORAGE) || '';
export const signedIn = () => apiKey() !== '';

// onSessionChange(fn) calls fn(message) after every sign-in and sign-out;
// message explains an involuntary sign-out (a refused key), else ''.
export function onSessionChange(fn) {
  listeners.add(fn);
}

function changed(message) {
  for (const fn of listeners) fn(message);
}

export function signIn(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
  changed('');
}

export function signOut(message = '') {
  sessionStorage.removeItem(KEY_STORAGE);
  changed(message);
}
