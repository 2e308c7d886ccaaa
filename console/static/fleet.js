// The fleet table: one row per session, kept in senderId order. A snapshot
// (GET /api/whatsapp/sessions/status) replaces every row; a status from the
// event stream updates its one row. Changes are batched and drawn once per
// animation frame, and a row's cells are touched only when their text
// changed, so that a thousand sessions coming back at once do not freeze
// the page.

/** Every state, in the service's order (sessions.States). */
export const STATES = ['restoring', 'connecting', 'pairing', 'connected', 'reconnecting',
  'needs_pairing', 'banned', 'conflict', 'failed', 'stopped'];

/** The state as a word. */
export function stateWord(state) {
  return String(state).replace(/_/g, ' ');
}

/** A badge: the state's colour, shape and word. */
export function badge(state) {
  const el = document.createElement('span');
  setBadge(el, state);
  return el;
}

function setBadge(el, state) {
  el.className = 'badge s-' + (STATES.includes(state) ? state : 'stopped');
  el.textContent = stateWord(state);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** A time for a person: the time of day today, else the date too. */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

/** What the session needs from its operator, as a sentence. */
export function actionSentence(st) {
  switch (st.userAction) {
    case 'none':
      return st.state === 'stopped' ? 'Nothing: stopped by an operator; start it to connect.' : 'Nothing to do.';
    case 'scan_qr':
      return st.state === 'pairing'
        ? 'Scan its QR code with the phone, or pair it by phone number.'
        : 'Pair it again: start it, then scan its QR code.';
    case 'restore':
      return 'Fix the cause in its error, then restore it.';
    case 'wait':
      return st.nextRetryAt ? `Wait: the service retries at ${when(st.nextRetryAt)}.` : 'Wait: the service is on it.';
    default:
      return String(st.userAction || '');
  }
}

/** The time a status is from, in ms (0 when missing). */
function sinceMs(st) {
  const t = Date.parse(st.since);
  return Number.isNaN(t) ? 0 : t;
}

const COLUMNS = ['Session', 'State', 'Since', 'Last connected', 'Reconnects', 'Restarts', 'Error', 'What to do'];

/** The table of sessions under tbody. */
export class Fleet {
  /**
   * opts.open(id) opens a session (its id button was pressed);
   * opts.changed(ids) runs after each drawn batch with the ids it changed.
   */
  constructor(tbody, opts) {
    this.tbody = tbody;
    this.opts = opts;
    this.rows = new Map(); // senderId -> {st, tr, cells, text}
    this.order = []; // senderIds, sorted as the API sorts them (byte order)
    this.pending = new Map(); // senderId -> status, or null to remove
    this.frame = 0;
    this.stateFilter = '';
    this.search = '';
    this.selected = null;
    tbody.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-id]');
      if (b) this.opts.open(b.dataset.id);
    });
  }

  /** The status shown for id, or undefined. */
  get(id) {
    const r = this.rows.get(id);
    return r && r.st;
  }

  /** How many sessions there are. */
  get size() {
    return this.rows.size;
  }

  /** The number of sessions in each state. */
  counts() {
    const c = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const { st } of this.rows.values()) c[st.state] = (c[st.state] || 0) + 1;
    return c;
  }

  /**
   * replace shows exactly the snapshot's sessions, drawn at once: rows of
   * sessions the snapshot lacks go, pending changes are dropped (the
   * caller re-applies what arrived after the snapshot was asked for).
   */
  replace(list) {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending.clear();
    const keep = new Map();
    for (const st of list) keep.set(st.senderId, st);
    const removed = [];
    for (const id of this.rows.keys()) {
      if (!keep.has(id)) removed.push(id);
    }
    if (this.rows.size === 0) {
      // The first load: build every row off the document, insert once
      // (timed as the performance measure "fleet-render").
      const began = performance.now();
      const frag = document.createDocumentFragment();
      const ids = [...keep.keys()].sort(byID);
      for (const id of ids) {
        const r = this.makeRow(keep.get(id));
        this.rows.set(id, r);
        frag.append(r.tr);
      }
      this.order = ids;
      this.tbody.replaceChildren(frag);
      performance.clearMeasures('fleet-render');
      performance.measure('fleet-render', { start: began });
      this.opts.changed(ids);
      return;
    }
    for (const id of removed) this.pending.set(id, null);
    for (const [id, st] of keep) this.pending.set(id, st);
    this.flush();
  }

  /**
   * apply shows st unless the row already shows a newer status of its
   * session (statuses carry since; events may overtake a snapshot).
   */
  apply(st) {
    const cur = this.pending.get(st.senderId) || this.get(st.senderId);
    if (cur && sinceMs(st) < sinceMs(cur)) return;
    this.pending.set(st.senderId, st);
    this.schedule();
  }

  /** remove drops id's row (a delete). */
  remove(id) {
    this.pending.set(id, null);
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** flush draws every pending change. */
  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.pending.size === 0) return;
    const changed = [...this.pending.keys()];
    for (const [id, st] of this.pending) {
      const r = this.rows.get(id);
      if (st === null) {
        if (r) {
          r.tr.remove();
          this.rows.delete(id);
          this.order.splice(this.index(id), 1);
        }
      } else if (r) {
        r.st = st;
        this.fill(r);
      } else {
        const nr = this.makeRow(st);
        const i = this.index(id);
        this.order.splice(i, 0, id);
        const next = this.order[i + 1];
        this.tbody.insertBefore(nr.tr, next === undefined ? null : this.rows.get(next).tr);
        this.rows.set(id, nr);
      }
    }
    this.pending.clear();
    this.opts.changed(changed);
  }

  /** index is where id is, or goes, in order. */
  index(id) {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (byID(this.order[mid], id) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  makeRow(st) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.dataset.label = COLUMNS[0];
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'link';
    b.dataset.id = st.senderId;
    b.textContent = st.senderId;
    th.append(b);
    tr.append(th);
    const cells = [];
    for (let i = 1; i < COLUMNS.length; i++) {
      const td = document.createElement('td');
      td.dataset.label = COLUMNS[i];
      if (i === 2 || i === 3) td.className = 'time';
      if (i === 4 || i === 5) td.className = 'num';
      if (i === 6) td.className = 'err';
      tr.append(td);
      cells.push(td);
    }
    const b2 = document.createElement('span');
    cells[0].append(b2);
    const r = { st, tr, cells, badge: b2, text: [] };
    tr.dataset.id = st.senderId;
    this.fill(r);
    return r;
  }

  /** fill writes the row's cells that changed. */
  fill(r) {
    const st = r.st;
    const text = [
      st.state,
      when(st.since),
      when(st.lastConnectedAt),
      String(st.reconnects ?? ''),
      String(st.restarts ?? ''),
      st.error ? st.error.message : '',
      actionSentence(st),
    ];
    for (let i = 0; i < text.length; i++) {
      if (r.text[i] === text[i]) continue;
      if (i === 0) {
        setBadge(r.badge, st.state);
        r.tr.dataset.state = st.state;
      } else {
        r.cells[i].textContent = text[i];
      }
    }
    r.text = text;
    r.tr.hidden = !this.matches(st);
    r.tr.classList.toggle('selected', st.senderId === this.selected);
  }

  matches(st) {
    return (!this.stateFilter || st.state === this.stateFilter) &&
      (!this.search || st.senderId.toLowerCase().includes(this.search));
  }

  /** filter shows only state (all when empty) and ids containing search. */
  filter(state, search) {
    this.stateFilter = state;
    this.search = search.trim().toLowerCase();
    let shown = 0;
    for (const r of this.rows.values()) {
      const ok = this.matches(r.st);
      if (r.tr.hidden === ok) r.tr.hidden = !ok;
      if (ok) shown++;
    }
    return shown;
  }

  /** How many rows the filter shows. */
  shown() {
    let n = 0;
    for (const r of this.rows.values()) if (!r.tr.hidden) n++;
    return n;
  }

  /** select marks id's row as the one open (null: none). */
  select(id) {
    const old = this.rows.get(this.selected);
    if (old) old.tr.classList.remove('selected');
    this.selected = id;
    const r = this.rows.get(id);
    if (r) r.tr.classList.add('selected');
  }

  /** The id button of id's row, to give focus back to. */
  button(id) {
    const r = this.rows.get(id);
    return r && r.tr.querySelector('button[data-id]');
  }
}

/** The API's order: senderIds compared byte by byte (they are ASCII). */
function byID(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
