// Browser tests of the dashboard, run by e2e/browser_e2e_test.go, which
// starts the suite and a receiver and passes them in the environment.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through go test ./e2e -run TestDashboardInBrowser`);
  return v;
};
const BASE_URL = env('BASE_URL');
const API_KEY = env('API_KEY');
const ACCOUNT_ID = env('ACCOUNT_ID');
const PRODUCER_TOKEN = env('PRODUCER_TOKEN');
const RECEIVER_URL = env('RECEIVER_URL');
const CONTROL_URL = env('CONTROL_URL');
const SHOTS = process.env.SCREENSHOT_DIR || new URL('./screenshots', import.meta.url).pathname;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

let browser;
let page;

// What went wrong in the page during the whole run, checked by the last
// test: failed requests, error answers (the API's refusals that tests
// provoke on purpose excepted), console errors and uncaught exceptions.
const problems = [];
const modules = new Map(); // URL of every .js the page loaded → status and content type
const EXPECTED_REFUSALS = new Set([400, 401]); // wrong key, invalid create/edit
const isApi = (url) => new URL(url).pathname.startsWith('/v1/');

function watch(p) {
  p.on('pageerror', (e) => {
    console.error('page error:', e.message);
    problems.push(`page error: ${e.message}`);
  });
  p.on('console', (m) => {
    if (m.type() !== 'error') return;
    const at = m.location()?.url || '';
    // Chromium logs every error answer of a fetch as "Failed to load
    // resource"; the API's are judged by their status below.
    if (/^Failed to load resource/.test(m.text()) && at && isApi(at)) return;
    problems.push(`console error: ${m.text()} (${at})`);
  });
  p.on('response', (r) => {
    const url = r.url();
    if (new URL(url).pathname.endsWith('.js')) modules.set(url, { status: r.status(), type: r.headers()['content-type'] || '' });
    if (r.status() < 400) return;
    if (isApi(url) && EXPECTED_REFUSALS.has(r.status())) return;
    problems.push(`${r.request().method()} ${url}: HTTP ${r.status()}`);
  });
  p.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    // Navigating (goto, reload) cancels the API loads of the view it leaves,
    // and the icon load Chromium starts after each page load.
    const cancelable = isApi(r.url()) || /\/favicon\.(svg|ico)$/.test(new URL(r.url()).pathname);
    if (why === 'net::ERR_ABORTED' && cancelable) return;
    problems.push(`${r.method()} ${r.url()} failed: ${why}`);
  });
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const context = await browser.newContext({ viewport: DESKTOP });
  page = await context.newPage();
  page.setDefaultTimeout(15000);
  watch(page);
});

after(async () => {
  await browser?.close();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeout = 20000) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

// textOf waits until the locator's text matches re and returns it.
async function textOf(locator, re, what, timeout) {
  return until(what || String(re), async () => {
    const t = await locator.first().innerText({ timeout: 1000 });
    return re.test(t) ? t : false;
  }, timeout);
}

async function shot(name) {
  await page.screenshot({ path: `${SHOTS}/${name}-desktop.png`, fullPage: true });
  await page.setViewportSize(PHONE);
  await sleep(150);
  await page.screenshot({ path: `${SHOTS}/${name}-phone.png`, fullPage: true });
  await page.setViewportSize(DESKTOP);
}

async function rest(method, path, token, body) {
  const res = await fetch(BASE_URL + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

async function control(path) {
  const res = await fetch(CONTROL_URL + path, { method: 'POST' });
  assert.ok(res.ok, `control ${path}: ${res.status} ${await res.text()}`);
}

// publish sends an event as the pipeline would and returns the id of its
// delivery to our endpoint.
async function publish(uploadId, text) {
  const { event } = await rest('POST', '/v1/events', PRODUCER_TOKEN, {
    accountId: ACCOUNT_ID, type: 'transcription.completed',
    data: { uploadId, text, duration: 12.5, credits: 3 },
  });
  return until(`the delivery of ${event.id}`, async () => {
    const r = await rest('GET', `/v1/deliveries?eventId=${event.id}`, API_KEY);
    return r.deliveries?.[0]?.id;
  });
}

const card = () => page.locator('article.endpoint').filter({ hasText: RECEIVER_URL });

test('sign in: a wrong key shows the API message; the key lives in sessionStorage only', async () => {
  await page.goto(BASE_URL + '/');
  await page.getByLabel('API key').waitFor();
  // The page is native ES modules: each one served as JavaScript.
  assert.deepEqual(await page.evaluate(() => [...document.scripts].map((s) => [s.type, s.getAttribute('src')])), [['module', 'js/main.js']]);
  const main = modules.get(`${BASE_URL}/js/main.js`);
  assert.equal(main?.status, 200, 'js/main.js loaded');
  assert.ok(modules.size > 5, `main.js imports the other modules: ${[...modules.keys()].join(' ')}`);
  for (const [url, m] of modules) assert.match(`${m.status} ${m.type}`, /^200 text\/javascript/, url);
  // A favicon: the linked SVG, and /favicon.ico for clients that ask by name.
  const icon = await page.locator('link[rel=icon]').getAttribute('href');
  for (const path of [`/${icon}`, '/favicon.ico']) {
    const r = await page.request.get(BASE_URL + path);
    assert.equal(`${r.status()} ${r.headers()['content-type']}`, '200 image/svg+xml', path);
  }
  // Nothing of the signed-in navigation before sign-in.
  assert.equal(await page.locator('#signout').isVisible(), false, 'Sign out hidden before sign-in');
  assert.equal(await page.getByRole('link', { name: 'Monitoring' }).count(), 0, 'no navigation before sign-in');

  await page.getByLabel('API key').fill('not-a-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const err = await textOf(page.locator('form p.error'), /\S/, 'a sign-in error');
  assert.doesNotMatch(err, /^\d{3}\b/, 'the API message, not a bare status');
  await shot('01-sign-in-error');

  assert.equal(await page.locator('#signout').isVisible(), false, 'Sign out hidden after a refused key');

  await page.getByLabel('API key').fill(API_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Settings → Webhooks' }).waitFor();
  assert.ok(await page.getByRole('button', { name: 'Sign out' }).isVisible(), 'Sign out shown once signed in');

  // Sign out ends the session: the form again, no key kept, no Sign out.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.locator('#signout').isVisible(), false, 'Sign out hidden after signing out');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the key is gone');

  await page.getByLabel('API key').fill(API_KEY);
  await page.getByLabel('API key').press('Enter'); // keyboard submit
  await page.getByRole('heading', { name: 'Settings → Webhooks' }).waitFor();
  assert.ok(await page.getByRole('button', { name: 'Sign out' }).isVisible(), 'Sign out shown again');
  const storage = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length, cookie: document.cookie }));
  assert.deepEqual(storage, { session: 1, local: 0, cookie: '' });
});

test('add an endpoint: API errors shown, secret shown once, Send Test succeeds', async () => {
  // No event type picked: the API refuses and its message is shown.
  await page.getByLabel('Endpoint URL').fill(RECEIVER_URL);
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  const err = await textOf(page.locator('form[aria-labelledby=add-h] p.error'), /\S/, 'the create error');
  assert.match(err, /event/i, `message names the field: ${err}`);

  // The operational events the suite emits itself are offered too.
  for (const t of ['endpoint.disabled', 'endpoint.enabled', 'delivery.exhausted']) {
    assert.equal(await page.locator(`input[name=eventTypes][value="${t}"]`).count(), 1, `a checkbox for ${t}`);
  }
  await page.locator('input[name=eventTypes][value="transcription.completed"]').check();
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  const secret = await textOf(card().locator('[data-testid=secret]'), /^whsec_/, 'the new secret');
  assert.match(secret, /^whsec_[A-Za-z0-9+/=]{40,}$/);
  await textOf(card().locator('.badge'), /ACTIVE/, 'status ACTIVE');
  assert.equal(await page.getByLabel('Endpoint URL').inputValue(), '', 'the form is cleared after adding');
  await shot('02-endpoint-added');

  await card().getByRole('button', { name: 'Send test' }).click();
  const notice = await textOf(card().locator('[data-testid=notice]'), /Test delivered: HTTP 200/, 'the test result');
  assert.match(notice, /\d+ ms/);
  await shot('03-send-test-ok');

  await card().getByRole('button', { name: 'Done, hide it' }).click();
  await until('the secret hidden', async () => (await page.locator('[data-testid=secret]').count()) === 0);
  await page.reload();
  await card().waitFor();
  assert.equal(await page.locator('[data-testid=secret]').count(), 0, 'the secret is never shown again');
});

test('publish an event: the delivery row appears and the detail shows the payload', async () => {
  const id = await publish('upl_browser_1', 'Hello <b>world</b> & "friends"');
  await page.getByRole('link', { name: 'Monitoring' }).click();
  const row = page.locator(`tr[data-delivery-id="${id}"]`);
  await textOf(row, /SUCCEEDED/, 'the delivery row (auto-refresh)');
  const text = await row.innerText();
  assert.match(text, /transcription\.completed/);
  assert.match(text, /200/);
  assert.ok(text.includes(RECEIVER_URL), 'endpoint URL in the row');
  await shot('04-monitoring');

  await row.getByRole('link').click();
  const payload = await textOf(page.locator('pre.payload'), /upl_browser_1/, 'the payload');
  assert.ok(payload.includes('"text": "Hello <b>world</b> & \\"friends\\""'), `pretty, escaped payload: ${payload}`);
  assert.equal(await page.locator('pre.payload b').count(), 0, 'receiver/producer text is never HTML');
  const attempts = await textOf(page.locator('ol.attempts'), /Attempt 1\s*SUCCEEDED\s*HTTP 200/, 'attempt 1 with HTTP 200');
  assert.doesNotMatch(attempts, /unspecified/i);
  // The trace link, when the suite knows its Jaeger UI (JAEGER_UI_URL).
  const { delivery } = await rest('GET', `/v1/deliveries/${id}`, API_KEY);
  if (delivery.traceUrl) {
    assert.equal(await page.getByRole('link', { name: /Open trace/ }).getAttribute('href'), delivery.traceUrl);
  }
  await page.locator('ol.attempts summary', { hasText: 'Request headers' }).first().click();
  const headers = await page.locator('ol.attempts dl.headers').first().innerText();
  assert.match(headers, /X-Webhook-Signature/i);
  // Auto-refresh re-renders the view but keeps the opened section and focus.
  await page.waitForTimeout(3500);
  assert.ok(await page.locator('ol.attempts dl.headers').first().isVisible(), 'headers stay open across a refresh');
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'SUMMARY', 'focus kept');
  await shot('05-delivery-detail');
});

test('failing receiver: failure and next attempt shown; Resend after recovery succeeds', async () => {
  await control('/receiver?code=500');
  const id = await publish('upl_browser_fail', 'will fail first');
  await page.goto(`${BASE_URL}/#/monitoring`);
  const row = page.locator(`tr[data-delivery-id="${id}"]`);
  const text = await textOf(row, /PENDING[\s\S]*500[\s\S]*in \d+/, 'a failed attempt with a next attempt time');
  assert.match(text, /\b1\b/, 'one attempt so far');
  await shot('06-failure-list');

  await row.getByRole('link').click();
  await textOf(page.locator('ol.attempts'), /HTTP 500[\s\S]*http_status/, 'the failed attempt with its error type');
  await textOf(page.locator('dl.summary'), /Next attempt\s*in \d+/, 'the next attempt time');
  await shot('07-failure-detail');

  await control('/receiver?code=200');
  await page.getByRole('button', { name: 'Resend now' }).click();
  await textOf(page.locator('dl.summary'), /SUCCEEDED/, 'success after Resend');
  await textOf(page.locator('ol.attempts'), /Attempt 2\s*SUCCEEDED\s*HTTP 200/, 'attempt 2 with HTTP 200');
  await shot('08-resend-success');
});

test('disabled endpoint: shown as such with its reason, and Activate brings it back', async () => {
  const { endpoints } = await rest('GET', '/v1/endpoints', API_KEY);
  const ep = endpoints.find((e) => e.url === RECEIVER_URL);
  // The real way: the receiver answers 410 Gone and delivery disables the
  // endpoint. Where that is not built, the registry's internal RPC does
  // what delivery would (the dashboard only reads status and reason).
  await control('/receiver?code=410');
  await publish('upl_browser_gone', 'gone');
  let via = '410 Gone';
  const disabled = await until('DISABLED after 410', async () => {
    const r = await rest('GET', `/v1/endpoints/${ep.id}`, API_KEY);
    return r.endpoint.status === 'ENDPOINT_STATUS_DISABLED';
  }, 8000).catch(() => false);
  if (!disabled) {
    via = 'registry DisableEndpointBySystem (no 410 handling in delivery)';
    await control(`/disable?endpointId=${ep.id}&reason=${encodeURIComponent('5 consecutive failures (last: HTTP 500)')}`);
  }
  console.log(`endpoint disabled via ${via}`);
  await control('/receiver?code=200');
  const { endpoint } = await rest('GET', `/v1/endpoints/${ep.id}`, API_KEY);
  assert.equal(endpoint.status, 'ENDPOINT_STATUS_DISABLED');
  assert.ok(endpoint.disabledReason, 'the API gives a reason');

  await page.goto(`${BASE_URL}/#/webhooks`);
  await textOf(card().locator('.badge'), /DISABLED/, 'the DISABLED badge');
  const reason = await textOf(card().locator('.reason'), /Disabled by the system/, 'the reason');
  assert.ok(reason.includes(endpoint.disabledReason), `reason shown: ${reason}`);
  const chart = await card().locator('svg[role=img]').getAttribute('aria-label');
  assert.match(chart, /Last 24 hours: \d+ delivered, \d+ failing/);
  await shot('09-disabled');

  await card().getByRole('button', { name: 'Activate' }).click();
  await textOf(card().locator('.badge'), /^ACTIVE$/, 'ACTIVE after Activate');
  assert.equal(await card().locator('.reason').count(), 0);
  await card().getByRole('button', { name: 'Deactivate' }).click();
  await textOf(card().locator('.badge'), /INACTIVE/, 'INACTIVE after Deactivate');
  await card().getByRole('button', { name: 'Activate' }).click();
  await textOf(card().locator('.badge'), /^ACTIVE$/, 'ACTIVE again');
});

// patchRaw calls PATCH without asserting success and returns the API's answer.
async function patchRaw(path, body) {
  const res = await fetch(BASE_URL + path, {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, data: await res.json() };
}

test('edit an endpoint: changes kept after reload, a reserved header shows the API message', async () => {
  await page.goto(`${BASE_URL}/#/webhooks`);
  await card().waitFor();
  const { endpoints } = await rest('GET', '/v1/endpoints', API_KEY);
  const ep = endpoints.find((e) => e.url === RECEIVER_URL);
  assert.ok(!ep.eventTypes.includes('upload.completed'), 'starts without upload.completed');

  await card().getByRole('button', { name: 'Edit', exact: true }).click();
  const form = card().locator('form.edit-endpoint');
  await until('focus in the URL field', async () => (await page.evaluate(() => document.activeElement?.id)) === `edit-url-${ep.id}`);
  assert.equal(await form.getByLabel('URL', { exact: true }).inputValue(), RECEIVER_URL, 'the form starts from the endpoint');
  await form.getByLabel('Description').fill('Production receiver (edited)');
  await form.locator('input[value="upload.completed"]').check();
  await form.getByLabel(/Rate limit/).fill('7');
  await form.getByRole('button', { name: 'Add header' }).click();
  await form.getByLabel('Header 1 name').fill('X-Customer');
  await form.getByLabel('Header 1 value').fill('acme-secret-42');
  await shot('14-edit-endpoint');
  await form.getByRole('button', { name: 'Save changes' }).click();
  await textOf(card().locator('[data-testid=notice]'), /Endpoint updated/, 'the saved notice');
  await until('the form closed', async () => (await card().locator('form.edit-endpoint').count()) === 0);

  const { endpoint } = await rest('GET', `/v1/endpoints/${ep.id}`, API_KEY);
  assert.equal(endpoint.description, 'Production receiver (edited)');
  assert.deepEqual([...endpoint.eventTypes].sort(), ['transcription.completed', 'upload.completed']);
  assert.equal(endpoint.rateLimitPerSecond, 7);
  assert.deepEqual(endpoint.headers, { 'X-Customer': 'acme-secret-42' });
  assert.equal(endpoint.url, RECEIVER_URL, 'fields not edited are untouched');

  await page.reload();
  await card().waitFor();
  const text = await textOf(card(), /Production receiver \(edited\)/, 'the new description after reload');
  assert.match(text, /Events: .*upload\.completed/);
  assert.match(text, /Rate limit: 7 requests\/s/);
  assert.match(text, /Custom headers: X-Customer/);
  assert.ok(!text.includes('acme-secret-42'), 'header values are never shown');

  // A reserved header: the API refuses and its message is shown in the form.
  const refused = await patchRaw(`/v1/endpoints/${ep.id}?updateMask=headers`, { headers: { 'Content-Type': 'text/plain' } });
  assert.equal(refused.status, 400, JSON.stringify(refused));
  await card().getByRole('button', { name: 'Edit', exact: true }).click();
  assert.equal(await form.getByLabel('Header 1 name').inputValue(), 'X-Customer');
  assert.equal(await form.getByLabel('Header 1 value').inputValue(), '', 'saved values are not put in the page');
  await form.getByRole('button', { name: 'Add header' }).click();
  await form.getByLabel('Header 2 name').fill('Content-Type');
  await form.getByLabel('Header 2 value').fill('text/plain');
  await form.getByRole('button', { name: 'Save changes' }).click();
  const err = await textOf(form.locator('[data-testid=edit-error]'), /\S/, 'the refusal');
  assert.equal(err, refused.data.message, 'the API message, as is');
  assert.match(err, /Content-Type/);
  await shot('15-edit-refused');
  await form.getByRole('button', { name: 'Remove header 2 (Content-Type)' }).click();
  await form.getByRole('button', { name: 'Cancel' }).click();
  await until('the form closed', async () => (await card().locator('form.edit-endpoint').count()) === 0);
  const after = await rest('GET', `/v1/endpoints/${ep.id}`, API_KEY);
  assert.deepEqual(after.endpoint.headers, { 'X-Customer': 'acme-secret-42' }, 'nothing changed by the refused save');
});

test('ordering: an endpoint added ordered by key is shown and stored so; the edit form makes it unordered', async () => {
  await page.goto(`${BASE_URL}/#/webhooks`);
  await page.getByRole('heading', { name: 'Add endpoint' }).waitFor();
  const url = `${new URL(RECEIVER_URL).origin}/ordered-receiver`;
  const add = page.locator('form[aria-labelledby=add-h]');
  assert.equal(await add.getByLabel('Ordering').inputValue(), 'ENDPOINT_ORDERING_UNORDERED', 'unordered unless chosen');
  assert.match(await add.locator('#new-ordering-hint').innerText(), /one at a time, in publish order/);
  await add.getByLabel('Endpoint URL').fill(url);
  await add.locator('input[name=eventTypes][value="credits.low"]').check();
  await add.getByLabel('Ordering').selectOption({ label: 'Ordered by key' });
  await add.getByRole('button', { name: 'Add endpoint' }).click();
  const ordered = page.locator('article.endpoint').filter({ hasText: url });
  await textOf(ordered.locator('[data-testid=endpoint-ordering]'), /^ordered by key$/, 'the ordering on the card');
  assert.equal(await add.getByLabel('Ordering').inputValue(), 'ENDPOINT_ORDERING_UNORDERED', 'the form is reset after adding');
  await textOf(card().locator('[data-testid=endpoint-ordering]'), /^unordered$/, 'the other endpoint stays unordered');
  await shot('16-ordered-endpoint');
  const { endpoints } = await rest('GET', '/v1/endpoints', API_KEY);
  const ep = endpoints.find((e) => e.url === url);
  assert.equal(ep.ordering, 'ENDPOINT_ORDERING_ORDERED_BY_KEY', 'stored ordered');

  await ordered.getByRole('button', { name: 'Edit', exact: true }).click();
  const form = ordered.locator('form.edit-endpoint');
  assert.equal(await form.getByLabel('Ordering').inputValue(), 'ENDPOINT_ORDERING_ORDERED_BY_KEY', 'the edit form starts from the endpoint');
  await form.getByLabel('Ordering').selectOption({ label: 'Unordered' });
  await form.getByRole('button', { name: 'Save changes' }).click();
  await textOf(ordered.locator('[data-testid=notice]'), /Endpoint updated \(ordering\)/, 'the saved notice naming the ordering alone');
  await textOf(ordered.locator('[data-testid=endpoint-ordering]'), /^unordered$/, 'unordered on the card');
  const { endpoint } = await rest('GET', `/v1/endpoints/${ep.id}`, API_KEY);
  assert.equal(endpoint.ordering, 'ENDPOINT_ORDERING_UNORDERED', 'stored unordered');
  assert.deepEqual(endpoint.eventTypes, ['credits.low'], 'fields not edited are untouched');
  await rest('DELETE', `/v1/endpoints/${ep.id}`, API_KEY);
});

test('replay: the answer and its progress, up to delivered after Activate', async () => {
  const { endpoints } = await rest('GET', '/v1/endpoints', API_KEY);
  const ep = endpoints.find((e) => e.url === RECEIVER_URL);
  // 410 Gone parks the delivery and disables the endpoint: a delivery that
  // replay picks up.
  await control('/receiver?code=410');
  const id = await publish('upl_browser_replay', 'replay me');
  await until('the delivery PARKED and the endpoint DISABLED', async () => {
    const [{ delivery }, { endpoint }] = await Promise.all([
      rest('GET', `/v1/deliveries/${id}`, API_KEY), rest('GET', `/v1/endpoints/${ep.id}`, API_KEY)]);
    return delivery.status === 'DELIVERY_STATUS_PARKED' && endpoint.status === 'ENDPOINT_STATUS_DISABLED';
  });
  await control('/receiver?code=200');

  await page.goto(`${BASE_URL}/#/webhooks`);
  await page.reload();
  await textOf(card().locator('.badge'), /DISABLED/, 'the DISABLED badge');
  await card().getByRole('button', { name: 'Replay…' }).click();
  const since = card().getByLabel(/created since/);
  const value = await since.inputValue();
  const ago = Date.now() - new Date(value).getTime();
  assert.ok(Math.abs(ago - 24 * 3600e3) < 5 * 60e3, `defaults to 24 hours ago: ${value}`);
  await textOf(card().locator('form.replay-form'), /not active/, 'the hint that a disabled endpoint holds them');
  await shot('16-replay-form');
  await card().getByRole('button', { name: 'Start replay' }).click();
  const answer = await textOf(card().locator('[data-testid=replay]'), /Replay started: \d+ deliver/, 'the replay answer');
  const queued = Number(answer.match(/Replay started: (\d+)/)[1]);
  assert.ok(queued >= 1, `at least the parked delivery is queued: ${answer}`);
  await textOf(card().locator('[data-testid=replay-progress]'), /\d+ of \d+ finished/, 'the progress');
  await shot('17-replay-started');

  await card().getByRole('button', { name: 'Activate' }).click();
  await textOf(card().locator('.badge'), /^ACTIVE$/, 'ACTIVE after Activate');
  const done = await textOf(card().locator('[data-testid=replay-progress]'), /(\d+) of \1 finished: \1 delivered.*Done/,
    'the progress reaching all delivered', 45000);
  console.log(`replay: ${answer.split('\n')[0]} → ${done}`);
  const { delivery } = await rest('GET', `/v1/deliveries/${id}`, API_KEY);
  assert.equal(delivery.status, 'DELIVERY_STATUS_SUCCEEDED');
  await shot('18-replay-done');
  await card().getByRole('button', { name: 'Hide' }).click();
  await until('the replay answer hidden', async () => (await card().locator('[data-testid=replay]').count()) === 0);
});

test('history: an archived event is found by uploadId and by id with its deliveries; 24 h charts from the rollups', async () => {
  const deliveryId = await publish('upl_browser_hist', 'archived soon');
  const { delivery } = await rest('GET', `/v1/deliveries/${deliveryId}`, API_KEY);
  await until('the delivery succeeded', async () => dlStatusOf(await rest('GET', `/v1/deliveries/${deliveryId}`, API_KEY)) === 'SUCCEEDED');
  // The event moves to PostgreSQL as the archiver moves it, with one archived attempt.
  await control(`/archive?eventId=${delivery.eventId}&endpointId=${delivery.endpointId}`);

  await page.getByRole('link', { name: 'History' }).click();
  await page.getByRole('heading', { name: 'History' }).waitFor();
  const all = page.locator('figure[data-chart="all endpoints"] svg').first();
  await until('the chart counts the archived attempt', async () => /[1-9]\d* succeeded/.test(await all.getAttribute('aria-label')));
  assert.ok(await page.locator('figure.chart-wide rect.bar-ok').count() >= 1, 'a bar for the archived minute');
  assert.ok(await page.locator('figure.chart-wide polyline.lat-p50').count() === 1, 'the p50 latency line');
  await shot('14-history-charts');

  await page.getByLabel('Endpoint', { exact: true }).selectOption({ label: RECEIVER_URL });
  await page.locator(`figure[data-chart="${RECEIVER_URL}"]`).waitFor();
  assert.match(await page.locator(`figure[data-chart="${RECEIVER_URL}"] svg`).first().getAttribute('aria-label'), /[1-9]\d* succeeded/);

  for (const term of ['upl_browser_hist', delivery.eventId]) {
    await page.getByLabel('Upload id or event id').fill(term);
    await page.getByRole('button', { name: 'Search' }).click();
    const ev = page.locator(`article.history-event[data-event="${delivery.eventId}"]`);
    await textOf(ev, /archived soon/, `the archived event found by ${term}`);
    await ev.getByRole('link', { name: deliveryId }).waitFor();
  }
  await shot('15-history-search');
  await page.getByLabel('Upload id or event id').fill('upl_nothing_here');
  await page.getByRole('button', { name: 'Search' }).click();
  await textOf(page.locator('[data-key="no-results"]'), /No event found/, 'the empty search');
  await page.getByRole('link', { name: 'Settings → Webhooks' }).click();
  await card().waitFor();
});

const dlStatusOf = (r) => (r.delivery?.status || '').replace('DELIVERY_STATUS_', '');

test('rotate secret, settings, delete with confirmation', async () => {
  await card().getByRole('button', { name: 'Rotate secret' }).click();
  const secret = await textOf(card().locator('[data-testid=secret]'), /^whsec_/, 'the rotated secret');
  assert.ok(secret.length > 40);
  await shot('10-rotated');
  await card().getByRole('button', { name: 'Done, hide it' }).click();
  await until('the secret hidden', async () => (await page.locator('[data-testid=secret]').count()) === 0);

  await page.getByLabel(/Notification email/).fill('ops@example.com');
  await page.getByLabel('Credits low threshold').fill('25');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await textOf(page.locator('form[aria-labelledby=settings-h] [role=status]'), /Settings saved/, 'saved');
  await page.reload();
  await until('settings kept', async () => (await page.getByLabel(/Notification email/).inputValue()) === 'ops@example.com');
  assert.equal(await page.getByLabel('Credits low threshold').inputValue(), '25');

  await card().getByRole('button', { name: 'Delete' }).click();
  await card().getByRole('button', { name: 'Yes, delete' }).waitFor();
  await until('focus on Cancel', async () => (await page.evaluate(() => document.activeElement?.textContent)) === 'Cancel');
  await shot('11-delete-confirm');
  await card().getByRole('button', { name: 'Yes, delete' }).click();
  await until('the endpoint gone', async () => (await card().count()) === 0);
  await page.getByText('No endpoints yet').waitFor();
  await shot('12-deleted');
});

test('API keys: create (the key shown once), listed without it, revoke with a confirmation; the last key stays', async () => {
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByRole('heading', { name: 'API keys' }).waitFor();
  const rows = page.locator('table.keys tbody tr');
  await until('the sign-in key listed', async () => (await rows.count()) === 1);
  assert.match(await rows.first().innerText(), /this session/);
  assert.ok(await rows.first().getByRole('button', { name: 'Revoke' }).isDisabled(), 'the last key offers Revoke');

  await page.getByLabel(/^Name/).fill('CI deploys');
  await page.getByRole('button', { name: 'Create key' }).click();
  const key = await textOf(page.locator('[data-testid=new-key]'), /^vsk_/, 'the new key');
  await until('two keys listed', async () => (await rows.count()) === 2);
  const row = rows.filter({ hasText: 'CI deploys' });
  assert.ok((await row.innerText()).includes(key.slice(0, 12)), 'the new key\'s prefix is listed');
  assert.ok(!(await page.locator('table.keys').innerText()).includes(key), 'the list shows the key');
  await shot('14-key-created');
  const works = await fetch(`${BASE_URL}/v1/endpoints`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(works.status, 200);

  await page.getByRole('button', { name: 'Done, hide it' }).click();
  await until('the key hidden', async () => (await page.locator('[data-testid=new-key]').count()) === 0);
  await page.reload();
  await until('the list again', async () => (await rows.count()) === 2);
  assert.ok(!(await page.content()).includes(key), 'the key is on the page after it was hidden');

  await row.getByRole('button', { name: 'Revoke' }).click();
  await row.getByRole('button', { name: 'Yes, revoke' }).waitFor();
  await until('focus on Cancel', async () => (await page.evaluate(() => document.activeElement?.textContent)) === 'Cancel');
  await shot('14-key-revoke-confirm');
  await row.getByRole('button', { name: 'Yes, revoke' }).click();
  await until('the key gone', async () => (await rows.count()) === 1);
  const revokedAt = Date.now();
  await until('the revoked key refused', async () => {
    const r = await fetch(`${BASE_URL}/v1/endpoints`, { headers: { Authorization: `Bearer ${key}` } });
    return r.status === 401;
  }, 2000);
  assert.ok(Date.now() - revokedAt < 2000);
  assert.ok(await rows.first().getByRole('button', { name: 'Revoke' }).isDisabled(), 'the last key offers Revoke');
  await shot('14-key-revoked');
  await page.getByRole('link', { name: 'Settings → Webhooks' }).click();
});

test('keyboard: Tab reaches the navigation and every form control, each with a focus ring', async () => {
  await page.goto(`${BASE_URL}/#/webhooks`);
  await page.reload(); // start from the top of a fresh page
  await page.getByRole('heading', { name: 'Add endpoint' }).waitFor();
  const seen = [];
  for (let i = 0; i < 30 && !seen.includes('Save settings'); i++) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const e = document.activeElement;
      return { tag: e.tagName, name: (e.textContent || e.name || e.id || '').trim().slice(0, 40), outline: getComputedStyle(e).outlineStyle };
    });
    if (f.tag === 'BODY') continue;
    assert.notEqual(f.outline, 'none', `no focus ring on ${f.tag} "${f.name}"`);
    seen.push(f.name);
  }
  for (const want of ['Monitoring', 'Sign out', 'url', 'Add endpoint', 'Save settings']) {
    assert.ok(seen.includes(want), `Tab never reached "${want}": ${seen.join(' | ')}`);
  }
  await page.keyboard.press('Shift+Tab');
  await shot('13-keyboard-focus');
});

test('the whole run: no failed request, no unexpected error answer, no console error', () => {
  assert.deepEqual(problems, []);
});
