// The service's Server-Sent Events stream, read with fetch() so that the
// key goes in the Authorization header (EventSource cannot send one, and
// the key never goes in a URL or a cookie). It reconnects by itself with
// backoff, sending Last-Event-ID so that the service replays what was
// missed, or answers `reset`.

import { authHeader } from './api.js';

/**
 * Stream reads url until stop(). handlers: open() once each connection is
 * up, event(type, data, id) for each event, closed() when a connection
 * ends (a retry follows), unauthorized() on 401 and unavailable(status)
 * when the service has no stream (both end it).
 */
export class Stream {
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.lastId = null;
    this.retryMs = 1000;
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    if (this.ctrl) this.ctrl.abort();
    clearTimeout(this.timer);
    if (this.wake) this.wake();
  }

  async run() {
    let delay = 1000;
    while (!this.stopped) {
      this.ctrl = new AbortController();
      const headers = { ...authHeader(), Accept: 'text/event-stream' };
      if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
      try {
        const res = await fetch(this.url, { headers, cache: 'no-store', credentials: 'omit', signal: this.ctrl.signal });
        if (res.status === 401) {
          this.stopped = true;
          this.h.unauthorized();
          return;
        }
        if (res.status === 404 || res.status === 405 || res.status === 501) {
          this.stopped = true;
          this.h.unavailable(res.status);
          return;
        }
        const type = res.headers.get('Content-Type') || '';
        if (res.ok && type.startsWith('text/event-stream') && res.body) {
          delay = 1000;
          this.h.open();
          await this.read(res.body);
        } else if (res.body) {
          await res.body.cancel();
        }
      } catch {
        // a dropped connection or an abort: retried below unless stopped
      }
      if (this.stopped) return;
      this.h.closed();
      // Each retry waits longer (up to 30 s, or what the stream's retry:
      // field says), with jitter so that many consoles do not come back at once.
      const wait = Math.max(delay, this.retryMs) * (0.8 + Math.random() * 0.4);
      delay = Math.min(delay * 2, 30000);
      await new Promise((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, wait);
      });
    }
  }

  /** Parses the event stream (the WHATWG rules) until it ends. */
  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let type = '';
    let data = [];
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.stopped) return;
      buf += value;
      let start = 0;
      for (;;) {
        let end = start;
        while (end < buf.length && buf[end] !== '\n' && buf[end] !== '\r') end++;
        if (end >= buf.length) break;
        // A CR at the end of the chunk may be the first half of a CRLF.
        if (buf[end] === '\r' && end + 1 >= buf.length) break;
        const line = buf.slice(start, end);
        start = end + (buf[end] === '\r' && buf[end + 1] === '\n' ? 2 : 1);
        if (line === '') {
          if (id !== null) this.lastId = id;
          if (data.length > 0) this.h.event(type || 'message', data.join('\n'), this.lastId);
          type = '';
          data = [];
          id = null;
          continue;
        }
        if (line[0] === ':') continue; // a comment: the heartbeat
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val[0] === ' ') val = val.slice(1);
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id' && !val.includes('\0')) id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) this.retryMs = Number(val);
      }
      buf = buf.slice(start);
    }
  }
}
