// One session's panel: its status, its actions (start, stop, restore,
// logout, delete), pairing (the QR code as an image that follows the
// codes' rotation, with a countdown, or a pairing code for a phone
// number), and in test mode the phone's and the network's actions. QR and
// pairing codes are shown, never logged, never put in a URL.

import { call, callJSON, sessionPath, ApiError } from './api.js';
import { badge, actionSentence, when, stateWord } from './fleet.js';

const $ = (id) => document.getElementById(id);

/** What each action says it did. */
const DONE = {
  start: (id, created) => (created ? `Starting ${id}.` : `${id} is already running: nothing changed.`),
  stop: (id) => `${id} stopped.`,
  restore: (id) => `Restoring ${id}.`,
  logout: (id) => `${id} logged out: it needs pairing again.`,
};

/** Which actions make sense in each state (the API refuses the others). */
function enabled(act, st) {
  switch (act) {
    case 'start':
      return ['stopped', 'needs_pairing'].includes(st.state);
    case 'stop':
      return st.state !== 'stopped';
    case 'restore':
      return ['failed', 'conflict', 'stopped', 'needs_pairing'].includes(st.state);
    case 'logout':
      return Boolean(st.loggedIn || st.jid);
    default:
      return true;
  }
}

/** Detail is the session panel; opts.fleet is the Fleet, opts.announce(text) speaks. */
export class Detail {
  constructor(opts) {
    this.fleet = opts.fleet;
    this.announce = opts.announce;
    this.onDeleted = opts.deleted;
    this.id = null;
    this.testMode = false;
    this.qr = new QRView();
    this.section = $('detail');
    $('d-close').addEventListener('click', () => this.close());
    this.section.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.close();
    });
    for (const b of this.section.querySelectorAll('button[data-act]')) {
      b.addEventListener('click', () => this.act(b.dataset.act));
    }
    for (const b of this.section.querySelectorAll('button[data-test]')) {
      b.addEventListener('click', () => this.test(b.dataset.test));
    }
    $('phone-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.pairPhone();
    });
    const input = $('delete-confirm');
    input.addEventListener('input', () => {
      $('delete-go').disabled = input.value !== this.id;
    });
  }

  /** open shows session id's panel and moves the focus there. */
  open(id) {
    if (this.id !== id) {
      this.shown = undefined;
      this.qr.stop();
      $('pair-code').textContent = '';
      for (const r of ['d-result', 't-result']) say(r, '');
    }
    this.id = id;
    this.fleet.select(id);
    this.section.hidden = false;
    $('testmode').hidden = !this.testMode;
    this.render();
    this.section.scrollIntoView({ block: 'start' });
    $('detail-title').focus({ preventScroll: true });
  }

  /** close hides the panel and gives the focus back to the session's row. */
  close() {
    if (this.id === null) return;
    const id = this.id;
    this.id = null;
    this.qr.stop();
    $('pair-code').textContent = '';
    this.section.hidden = true;
    this.fleet.select(null);
    const b = this.fleet.button(id);
    if (b) b.focus();
    else $('fleet-table').parentElement.focus();
  }

  /**
   * gone closes the panel of its session, which was deleted by another
   * tab or client, and says so; a confirmation open for it is cancelled.
   */
  gone() {
    const id = this.id;
    for (const d of document.querySelectorAll('dialog[open]')) d.dispatchEvent(new Event('cancel'));
    this.close();
    say('fleet-result', `${id} was deleted.`);
    this.announce(`${id} was deleted.`);
  }

  /** changed is told which sessions a batch changed. */
  changed(ids) {
    if (this.id !== null && ids.includes(this.id)) this.render();
  }

  render() {
    const st = this.fleet.get(this.id);
    $('d-id').textContent = this.id;
    if (!st) {
      $('d-badge').replaceChildren();
      $('d-action').textContent = 'This session is no longer listed.';
      $('d-error').hidden = true;
      $('d-facts').replaceChildren();
      $('pairing').hidden = true;
      this.qr.stop();
      this.buttons(null);
      return;
    }
    const prev = this.shown;
    this.shown = st.state;
    $('d-badge').replaceChildren(badge(st.state));
    $('d-action').textContent = actionSentence(st);
    $('d-error').hidden = !st.error;
    $('d-error').textContent = st.error ? `${st.error.message} (${st.error.code})` : '';
    const facts = [
      ['Since', when(st.since)],
      ['Last connected', when(st.lastConnectedAt) || 'never'],
      ['Account', st.jid || '—'],
      ['Name', st.pushName || '—'],
      ['Reconnects', String(st.reconnects)],
      ['Restarts', String(st.restarts)],
    ];
    if (st.nextRetryAt) facts.push(['Next retry', when(st.nextRetryAt)]);
    $('d-facts').replaceChildren(...facts.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }));
    this.buttons(st);
    const pairing = st.state === 'pairing';
    $('pairing').hidden = !pairing;
    if (pairing) {
      this.qr.start(this.id);
    } else {
      this.qr.stop();
      $('pair-code').textContent = '';
    }
    if (prev !== undefined && prev !== st.state) this.announce(`${this.id} is now ${stateWord(st.state)}.`);
  }

  buttons(st) {
    for (const b of this.section.querySelectorAll('button[data-act]')) {
      const off = st === null ? b.dataset.act !== 'delete' : !enabled(b.dataset.act, st);
      // A button that goes off under the keyboard's focus hands it to the
      // panel's title rather than losing it to the page.
      if (off && document.activeElement === b) $('detail-title').focus({ preventScroll: true });
      b.disabled = off;
    }
  }

  async act(act) {
    const id = this.id;
    try {
      let msg;
      switch (act) {
        case 'start': {
          const res = await call('POST', sessionPath(id));
          msg = DONE.start(id, res.status === 202);
          break;
        }
        case 'stop':
          await call('POST', sessionPath(id, 'stop'));
          msg = DONE.stop(id);
          break;
        case 'restore':
          await call('POST', '/api/whatsapp/sessions/restore', { body: { senderIds: [id] } });
          msg = DONE.restore(id);
          break;
        case 'logout':
          if (!(await confirmIn('logout-dialog', id))) return;
          await call('POST', sessionPath(id, 'logout'));
          msg = DONE.logout(id);
          break;
        case 'delete':
          if (!(await confirmIn('delete-dialog', id))) return;
          await call('DELETE', sessionPath(id));
          this.onDeleted(id);
          this.fleet.flush(); // the row goes first, so the focus lands on the table
          this.close();
          say('fleet-result', `${id} deleted.`);
          this.announce(`${id} deleted.`);
          return;
      }
      say('d-result', msg);
    } catch (err) {
      say('d-result', failure(err), true);
    }
  }

  async pairPhone() {
    const id = this.id;
    const phone = $('phone').value.trim();
    $('pair-code').textContent = '';
    if (!phone) {
      say('d-result', 'Type the phone number to link, with its country code.', true);
      $('phone').focus();
      return;
    }
    try {
      const { code } = await callJSON('POST', sessionPath(id, 'pair-phone'), { body: { phone } });
      const strong = document.createElement('strong');
      strong.textContent = code;
      $('pair-code').replaceChildren('On the phone, type the code ', strong,
        ' (WhatsApp, Linked devices, Link with phone number instead).');
      say('d-result', '');
    } catch (err) {
      say('d-result', failure(err), true);
    }
  }

  async test(action) {
    const id = this.id;
    let body;
    if (action === 'ban') {
      const seconds = Number($('ban-seconds').value);
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86400) {
        say('t-result', 'A ban lasts 1 to 86400 seconds.', true);
        $('ban-seconds').focus();
        return;
      }
      body = { seconds };
    }
    try {
      const out = await callJSON('POST', `/api/whatsapp/test/session/${encodeURIComponent(id)}/${action}`, { body });
      say('t-result', `${action}: ${out.done}.`);
    } catch (err) {
      say('t-result', `${action}: ${failure(err)}`, true);
    }
  }
}

/** The sentence an error shows. */
export function failure(err) {
  if (err instanceof ApiError) return err.message;
  return 'Something went wrong: ' + err.message;
}

/** say writes text into the status element id (as a failure if failed). */
export function say(id, text, failed = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('failed', failed);
}

/**
 * confirmIn opens the dialog (logout, or delete which wants the id typed)
 * and resolves to whether the operator confirmed.
 */
function confirmIn(dialogId, id) {
  const d = $(dialogId);
  for (const el of d.querySelectorAll('.dialog-id')) el.textContent = id;
  const input = d.querySelector('input');
  if (input) {
    input.value = '';
    d.querySelector('button[value="confirm"]').disabled = true;
  }
  return new Promise((resolve) => {
    const buttons = [...d.querySelectorAll('button[value]')];
    const done = (ok) => {
      for (const b of buttons) b.removeEventListener('click', onClick);
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
      resolve(ok);
    };
    const onClick = (e) => done(e.currentTarget.value === 'confirm' && (!input || input.value === id));
    const onCancel = () => done(false);
    for (const b of buttons) b.addEventListener('click', onClick);
    d.addEventListener('cancel', onCancel);
    if (input) {
      input.onkeydown = (e) => {
        if (e.key === 'Enter' && input.value === id) {
          e.preventDefault();
          done(true);
        }
      };
    }
    d.showModal();
    if (input) input.focus();
  });
}

/**
 * QRView shows a pairing session's current QR code: it asks for the code
 * and its expiry (GET .../qr), fetches the image with the key (GET
 * .../qr?format=png, shown from a blob URL) when the code changed, counts
 * down to the expiry, and asks again then, which is when the next code is
 * there.
 */
class QRView {
  constructor() {
    this.id = null;
    this.img = $('qr');
    this.caption = $('qr-caption');
    this.url = null;
    this.code = null;
    this.expires = 0;
  }

  start(id) {
    if (this.id === id) return;
    this.stop();
    this.id = id;
    this.gen = (this.gen || 0) + 1;
    this.caption.textContent = 'Waiting for a QR code…';
    this.refresh(this.gen);
  }

  stop() {
    this.id = null;
    this.gen = (this.gen || 0) + 1;
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    this.code = null;
    this.img.hidden = true;
    this.img.removeAttribute('src');
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  async refresh(gen) {
    const id = this.id;
    clearTimeout(this.timer);
    let retry = 1000;
    try {
      const q = await callJSON('GET', sessionPath(id, 'qr'));
      if (gen !== this.gen) return;
      if (q.code !== this.code) {
        const res = await call('GET', sessionPath(id, 'qr') + '?format=png');
        const blob = await res.blob();
        if (gen !== this.gen) return;
        const old = this.url;
        this.url = URL.createObjectURL(blob);
        this.img.src = this.url;
        this.img.hidden = false;
        if (old) URL.revokeObjectURL(old);
        this.code = q.code;
      }
      this.expires = Date.parse(q.expiresAt);
      this.tick();
      clearInterval(this.ticker);
      this.ticker = setInterval(() => this.tick(), 1000);
      // The next code is there when this one expires.
      retry = Math.max(this.expires - Date.now() + 250, 1000);
    } catch (err) {
      if (gen !== this.gen) return;
      // 409: not (or no longer) pairing; the state's event says what next.
      if (!(err instanceof ApiError && err.status === 409)) this.caption.textContent = failure(err);
    }
    this.timer = setTimeout(() => this.refresh(gen), retry);
  }

  tick() {
    const left = Math.max(0, Math.round((this.expires - Date.now()) / 1000));
    this.caption.textContent = left > 0 ? `This code changes in ${left} s.` : 'Getting the next code…';
  }
}
