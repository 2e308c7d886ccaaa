// The console's entry point: sign-in, the fleet (counts, restore progress,
// the table, its filter and search) kept live by the event stream, and the
// fleet-wide actions (create, restore all). See fleet.js for the table,
// session.js for one session's panel, stream.js for the stream.

import { call, callJSON, storedKey, storeKey, forgetKey, whenUnauthorized, ApiError, ID_PATTERN } from './api.js';
import { Fleet, STATES, stateWord, when } from './fleet.js';
import { Detail, failure, say } from './session.js';
import { Stream } from './stream.js';

const $ = (id) => document.getElementById(id);

const FLEET = '/api/whatsapp/sessions/status';
const EVENTS = '/api/whatsapp/events';

let fleet;
let detail;
let stream = null;
// While a snapshot loads, the changes events make wait here, to be applied
// over it in order.
let buffered = null;
let reloadAgain = false;
let restoring = false;
let reloadTimer = 0;

function announce(text) {
  // Cleared first, so that the same sentence twice is spoken twice.
  const el = $('announce');
  el.textContent = '';
  requestAnimationFrame(() => { el.textContent = text; });
}

// ---- sign-in -------------------------------------------------------------

function showSignIn(message = '') {
  stopLive();
  if (detail) detail.close();
  if (fleet) {
    fleet.replace([]);
    counts();
  }
  $('console').hidden = true;
  $('signout').hidden = true;
  $('live').hidden = true;
  $('mode').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('key').value = '';
  $('key').focus();
}

async function signIn(e) {
  e.preventDefault();
  const key = $('key').value.trim();
  if (!key) {
    $('signin-error').textContent = 'Paste the API key first.';
    $('key').focus();
    return;
  }
  $('signin-error').textContent = 'Checking the key…';
  try {
    // The fleet is what the console shows first; its answer says whether the key is right.
    const snapshot = await callJSON('GET', FLEET, { key });
    storeKey(key);
    $('key').value = '';
    $('signin-error').textContent = '';
    await enter(snapshot);
  } catch (err) {
    $('signin-error').textContent = err instanceof ApiError && err.status === 401
      ? 'Wrong API key: the service refused it (401). Check API_KEY, or SESSIONS_DIR/.api-key.'
      : failure(err);
    $('key').select();
  }
}

function signOut() {
  forgetKey();
  showSignIn('Signed out. The key is forgotten in this tab.');
}

whenUnauthorized(() => {
  forgetKey();
  showSignIn('The service refused the API key (401): it may have changed. Sign in again.');
});

// ---- the fleet -------------------------------------------------------------

async function enter(snapshot) {
  $('signin').hidden = true;
  $('console').hidden = false;
  $('signout').hidden = false;
  if (snapshot) show(snapshot);
  else reload();
  $('main').focus();
  callJSON('GET', '/api/whatsapp/info').then((info) => {
    detail.testMode = info.testMode === true;
    $('mode').hidden = !detail.testMode;
    $('testmode').hidden = !detail.testMode || detail.id === null;
  }).catch(() => {});
  startLive();
}

/** show draws a snapshot of the fleet. */
function show(snapshot) {
  fleet.replace(snapshot.sessions || []);
  restoreProgress(snapshot.restore);
  counts();
}

/**
 * reload asks for the fleet; events that arrive meanwhile are applied over
 * it. A reload asked for while one runs runs again after it, so that the
 * last snapshot is never older than the last request for one.
 */
async function reload() {
  if (buffered !== null) {
    reloadAgain = true;
    return;
  }
  buffered = [];
  try {
    const snapshot = await callJSON('GET', FLEET);
    show(snapshot);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) say('fleet-result', failure(err), true);
  } finally {
    const late = buffered || [];
    buffered = null;
    for (const apply of late) apply();
  }
  if (reloadAgain) {
    reloadAgain = false;
    reload();
  }
}

function restoreProgress(r) {
  restoring = Boolean(r && r.started && !r.finished);
  if (!r || !r.started) {
    $('restore').textContent = 'No restore has run yet in this run of the service.';
    return;
  }
  const parts = `${r.found} found, ${r.restored} restored, ${r.needsPairing} need pairing, ` +
    `${r.failed} failed, ${r.pending} pending`;
  $('restore').textContent = r.finished
    ? `Last restore: started ${when(r.started)}, finished ${when(r.finished)}: ${parts}.`
    : `Restore in progress since ${when(r.started)}: ${parts}.`;
}

/**
 * counts shows the number of sessions in each state, as buttons that
 * filter by it. The buttons are made once and updated in place, so that
 * one with the keyboard focus keeps it while the counts change.
 */
function counts() {
  const c = fleet.counts();
  const filter = $('filter-state').value;
  for (const b of $('counts').querySelectorAll('button')) {
    const state = b.dataset.state;
    const n = state ? c[state] : fleet.size;
    const num = b.querySelector('.n');
    if (num.textContent !== String(n)) num.textContent = String(n);
    b.parentElement.hidden = state !== '' && n === 0 && filter !== state;
  }
  $('empty').hidden = fleet.size > 0;
  shownLine(fleet.shown());
}

/** countButtons makes the counts' buttons: every session, then each state. */
function countButtons() {
  $('counts').replaceChildren(...['', ...STATES].map((state) => {
    const word = state ? stateWord(state) : 'all';
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = state ? `badge s-${state}` : 'badge';
    b.dataset.state = state;
    b.setAttribute('aria-pressed', String(state === ''));
    b.title = state ? `Show only the ${word} sessions` : 'Show every session';
    const num = document.createElement('span');
    num.className = 'n';
    num.textContent = '0';
    b.append(word, ' ', num);
    li.append(b);
    return li;
  }));
}

function shownLine(n) {
  $('shown').textContent = n === fleet.size ? `${n} session${n === 1 ? '' : 's'}` : `${n} of ${fleet.size} shown`;
}

function applyFilter() {
  shownLine(fleet.filter($('filter-state').value, $('search').value));
  for (const b of $('counts').querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(b.dataset.state === $('filter-state').value));
  }
  counts();
}

// ---- live updates --------------------------------------------------------

function live(text, on) {
  const el = $('live');
  el.hidden = false;
  el.textContent = text;
  el.classList.toggle('on', on);
  el.classList.toggle('off', !on);
}

function startLive() {
  stopLive();
  stream = new Stream(EVENTS, {
    open() {
      live('Live', true);
      // The stream starts live: a snapshot asked for now misses nothing.
      // After a reconnect missed events are replayed (or a reset is sent),
      // but a fresh snapshot also drops sessions deleted meanwhile.
      reload();
    },
    event(type, data) {
      if (type === 'reset') {
        reload();
        return;
      }
      const apply = change(type, data);
      if (!apply) return;
      if (buffered !== null) buffered.push(apply);
      else apply();
      if (restoring) reloadSoon();
    },
    closed() {
      live('Reconnecting…', false);
    },
    unauthorized() {
      forgetKey();
      showSignIn('The service refused the API key (401): it may have changed. Sign in again.');
    },
    unavailable() {
      live('Not live: this service has no event stream. Reload the page to refresh.', false);
    },
  });
  stream.start();
}

/**
 * change is what an event does to the fleet, as a function to run now or
 * once the snapshot that is loading is shown; null for an event that
 * changes nothing shown (message events) or is not understood.
 */
function change(type, data) {
  if (type !== 'session.state' && type !== 'session.deleted') return null;
  let v;
  try {
    v = JSON.parse(data);
  } catch {
    return null;
  }
  if (!v || typeof v.senderId !== 'string') return null;
  // A deletion's data is the envelope the webhooks POST, which names the session too.
  return type === 'session.state' ? () => fleet.apply(v) : () => deleted(v.senderId);
}

/** deleted drops the row of a session deleted by anyone, and closes its panel. */
function deleted(id) {
  fleet.remove(id);
  if (detail.id !== id) return;
  fleet.flush(); // the row goes first, so the focus lands on the table
  detail.gone();
}

function stopLive() {
  if (stream) stream.stop();
  stream = null;
  clearTimeout(reloadTimer);
  reloadTimer = 0;
}

/** While a restore runs, its progress is refreshed at most every 2 s, on events only. */
function reloadSoon() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => {
    reloadTimer = 0;
    reload();
  }, 2000);
}

// ---- fleet actions -------------------------------------------------------

async function create(e) {
  e.preventDefault();
  const input = $('new-id');
  const id = input.value.trim();
  if (!ID_PATTERN.test(id)) {
    say('fleet-result', 'A session id is 1 to 64 letters, digits, _ or -.', true);
    input.focus();
    return;
  }
  try {
    const res = await call('POST', `/api/whatsapp/session/${encodeURIComponent(id)}`);
    const st = await res.json();
    fleet.apply(st);
    fleet.flush();
    input.value = '';
    say('fleet-result', res.status === 202 ? `Created ${id}: it shows a QR code once pairing starts.` :
      `${id} already exists and runs: nothing changed.`);
    detail.open(id);
  } catch (err) {
    say('fleet-result', failure(err), true);
  }
}

async function restoreAll() {
  try {
    const out = await callJSON('POST', '/api/whatsapp/sessions/restore');
    say('fleet-result', `${out.message}: the stored sessions that are not running come back in the background (stopped ones stay stopped).`);
    restoring = true;
    reloadSoon();
  } catch (err) {
    say('fleet-result', failure(err), true);
  }
}

// ---- start -----------------------------------------------------------------

function init() {
  const select = $('filter-state');
  for (const s of STATES) select.append(new Option(stateWord(s), s));
  countButtons();
  fleet = new Fleet($('rows'), {
    open: (id) => detail.open(id),
    changed(ids) {
      counts();
      detail.changed(ids);
    },
  });
  detail = new Detail({ fleet, announce, deleted: (id) => fleet.remove(id) });
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  $('create-form').addEventListener('submit', create);
  $('restore-all').addEventListener('click', restoreAll);
  select.addEventListener('change', applyFilter);
  $('search').addEventListener('input', applyFilter);
  $('counts').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-state]');
    if (!b) return;
    select.value = b.dataset.state;
    applyFilter();
  });
  if (storedKey()) enter(undefined);
  else showSignIn();
}

init();
