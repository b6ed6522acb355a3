// The REST client: every call carries the session's bearer key; a refusal
// throws an ApiError whose message is the API's own (google.rpc Status
// "message"), word for word. listAll is the one paging helper: every list
// the dashboard shows or counts goes through it.

import { apiKey, onSessionChange, signOut } from './session.js';

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

// request calls the API with the session's key, or with opts.key (the
// sign-in form tries a key before it becomes the session's).
export async function request(method, path, body, opts = {}) {
  const ownKey = opts.key === undefined;
  const key = ownKey ? apiKey() : opts.key;
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text.trim() };
  }
  if (!res.ok) {
    const err = new ApiError(data.message || `${res.status} ${res.statusText}`, res.status);
    // A session key that stops working (revoked) ends the session; a wrong
    // key on the sign-in form is only reported there.
    if (res.status === 401 && ownKey && key) signOut(`Your API key was refused: ${err.message}`);
    throw err;
  }
  return data;
}

export const get = (path) => request('GET', path);
export const post = (path, body = {}) => request('POST', path, body);
export const patch = (path, body) => request('PATCH', path, body);
export const del = (path) => request('DELETE', path);

// query builds "?a=1&b=2" from the parameters that are set.
export function query(params) {
  const s = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined && v !== null));
  return s.toString() ? `?${s}` : '';
}

// listAll pages through GET path (whose answer lists its items under field)
// from params.pageToken on, at most maxPages pages of pageSize. It returns
// the items, the token of the page after the last one read ('' at the end)
// and whether it stopped at maxPages with more to read.
export async function listAll(path, field, params = {}, { pageSize = 100, maxPages = 10 } = {}) {
  const items = [];
  let token = params.pageToken || '';
  for (let i = 0; i < maxPages; i++) {
    const r = await get(`${path}${query({ ...params, pageSize, pageToken: token })}`);
    items.push(...(r[field] || []));
    token = r.nextPageToken || '';
    if (!token) break;
  }
  return { items, nextPageToken: token, truncated: Boolean(token) };
}

// ---- resources shared by the views ----------------------------------------

let eventTypeCache = null; // the catalogue, read once per session
onSessionChange(() => { eventTypeCache = null; });

export async function eventTypes() {
  if (!eventTypeCache) eventTypeCache = (await get('/v1/event-types')).eventTypes || [];
  return eventTypeCache;
}

export async function endpoints() {
  return (await listAll('/v1/endpoints', 'endpoints', {}, { maxPages: 20 })).items;
}

// deliveries lists deliveries matching params (endpointId, status,
// eventType, startTime, pageToken), up to 10 pages of 100 unless told.
export const deliveries = (params, opts) => listAll('/v1/deliveries', 'deliveries', params, opts);
