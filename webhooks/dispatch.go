package webhooks

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// head is a session's first undelivered delivery at an endpoint, and
// the last one it has.
type head struct {
	seq      int64
	last     int64
	senderID string
	next     time.Time
}

// lane is an endpoint's dispatcher state shared with its workers: the
// attempts' results that are recorded (queued to the writer) but not yet
// committed. A worker moves on to its session's next delivery as soon as
// the endpoint answered, without waiting for the commit (0.3-0.7 s under
// load), so until the commit lands the database still shows a delivered
// delivery as pending, and a failed one with its previous next try: every
// read of the queue goes through the lane, which hides the first and
// corrects the second. A crash before the commit sends such a delivery
// again with the same webhook-id (at least once).
type lane struct {
	ep   string
	wake chan struct{} // new or retried deliveries

	mu sync.Mutex
	// marks holds each recorded, uncommitted result by delivery seq; a
	// later attempt's result replaces an earlier one's.
	marks map[int64]mark
	// done lists, per session, the seqs whose result (delivered or dead)
	// is recorded but not committed, in the order recorded.
	done map[string][]int64
}

// poke wakes the lane's dispatcher to read the queue again.
func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default: // already woken
	}
}

func newLane(ep string) *lane {
	return &lane{ep: ep, wake: make(chan struct{}, 1), marks: map[int64]mark{}, done: map[string][]int64{}}
}

// add notes m, recorded for sender's delivery m.seq.
func (l *lane) add(sender string, m mark) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks[m.seq] = m
	if m.state != "failed" {
		l.done[sender] = append(l.done[sender], m.seq)
	}
}

// settle forgets m once its commit ended: committed, the database says
// the same; failed (err), the delivery is sent again, and the dispatcher
// is woken to do so.
func (l *lane) settle(sender string, m mark, err error) {
	if err != nil {
		defer l.poke()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.marks[m.seq]; ok && cur.attempts == m.attempts {
		delete(l.marks, m.seq)
	}
	if m.state == "failed" {
		return
	}
	seqs := l.done[sender]
	if i := slices.Index(seqs, m.seq); i >= 0 {
		seqs = slices.Delete(seqs, i, i+1)
	}
	if len(seqs) == 0 {
		delete(l.done, sender)
	} else {
		l.done[sender] = seqs
	}
}

// skip is the range of sender's seqs that a read of its queue leaves out:
// from the lowest to the highest delivered but uncommitted one (ok false
// when there is none). No delivery still to be sent lies inside it: a
// session's deliveries are sent in order, and an operator's retry (of a
// dead one, below the range) waits for every result recorded before it to
// be committed.
func (l *lane) skip(sender string) (lo, hi int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seqs := l.done[sender]
	if len(seqs) == 0 {
		return 0, 0, false
	}
	return slices.Min(seqs), slices.Max(seqs), true
}

// overlay gives a delivery read from the database its uncommitted
// failed attempt's count and next try, if it has one.
func (l *lane) overlay(seq int64, attempts *int, next *time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.marks[seq]; ok && m.state == "failed" {
		*attempts, *next = m.attempts, time.Unix(0, m.next.Int64)
	}
}

// minQueryGap is the least time between two reads of an endpoint's
// queue heads; the gap grows to ten times the last read's duration, so
// that reading the heads of a large backlog (after an outage) takes at
// most a tenth of the time while commits keep waking the dispatcher.
const minQueryGap = 20 * time.Millisecond

// dispatch delivers to one endpoint until ctx ends: it reads the queue
// heads, starts a worker for each session whose head delivery is due (at
// most conc at once), and whenever a worker ends starts the next due head
// of that read, so that the workers stay busy between reads. It reads the
// heads again when a commit or retry wakes it, or the earliest waiting
// head is due, but never sooner than the gap after the last read. Only the
// heads (one row per session) are read. A head started from an older read
// may have been delivered meanwhile: its worker then finds nothing due.
func (o *Outbox) dispatch(ctx context.Context, l *lane) {
	defer o.workers.Done()
	inflight := map[string]bool{}
	ended := make(chan string)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []string // sessions whose head was due at the last read, not yet started since
	// startDue starts workers for the due sessions, up to conc at once.
	startDue := func() {
		for len(due) > 0 && len(inflight) < o.conc {
			sender := due[0]
			due = due[1:]
			if inflight[sender] {
				continue
			}
			inflight[sender] = true
			go func() {
				o.work(ctx, l, sender)
				ended <- sender
			}()
		}
	}
	// wait waits up to d for a worker to end (starting the next due one),
	// a wake, or d to pass; it reports false when ctx ended (after every
	// worker ended).
	wait := func(d time.Duration, wake <-chan struct{}) bool {
		timer.Reset(d)
		select {
		case <-ctx.Done():
			for len(inflight) > 0 {
				delete(inflight, <-ended)
			}
			return false
		case s := <-ended:
			delete(inflight, s)
			startDue()
		case <-wake:
		case <-timer.C:
		}
		return true
	}
	for {
		start := time.Now()
		heads, err := o.heads(ctx, l)
		gap := max(minQueryGap, 10*time.Since(start))
		next := time.Hour
		if err != nil && ctx.Err() == nil {
			o.log.Warn("webhook outbox: cannot read the queue; trying again in a second", "endpoint", redact(l.ep), "err", err)
			next = time.Second
		}
		now := o.now()
		due = due[:0]
		for _, h := range heads {
			if d := h.next.Sub(now); d > 0 {
				next = min(next, d)
			} else if !inflight[h.senderID] {
				due = append(due, h.senderID)
			}
		}
		startDue()
		if !wait(next, l.wake) {
			return
		}
		// Whatever woke the loop, read the heads again only after the gap;
		// workers that end meanwhile make room for the next due heads.
		for d := gap - time.Since(start); d > 0; d = gap - time.Since(start) {
			if !wait(d, nil) {
				return
			}
		}
	}
}

// heads lists each session's first delivery still to be sent at l's
// endpoint, with its next try as the lane knows it. Deliveries whose 2xx
// (or death) is recorded but not yet committed do not count: a session
// that has nothing else has no head.
func (o *Outbox) heads(ctx context.Context, l *lane) ([]head, error) {
	rows, err := o.db.QueryContext(ctx, o.q.heads, o.node, l.ep)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []head
	for rows.Next() {
		var h head
		var next sql.NullInt64
		if err := rows.Scan(&h.seq, &h.last, &h.senderID, &next); err != nil {
			return nil, err
		}
		h.next = time.Unix(0, next.Int64)
		if lo, hi, ok := l.skip(h.senderID); ok && h.seq >= lo && h.seq <= hi {
			if h.last <= hi {
				continue // nothing but uncommitted results
			}
			// The session's next is pending behind its uncommitted
			// results: due (pending deliveries are due from their start).
			h.next = time.Time{}
		} else {
			var attempts int
			l.overlay(h.seq, &attempts, &h.next)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// pendingDelivery is a delivery about to be attempted, with its event.
type pendingDelivery struct {
	seq      int64
	attempts int
	since    time.Time
	next     time.Time
	eventID  string
	eventTS  time.Time
	body     []byte
}

// workerTurn is how many deliveries a worker makes in a row before it
// gives its place to sessions that waited longer.
const workerTurn = 100

// readAhead is how many of a session's deliveries a worker reads at once.
const readAhead = 8

// work delivers session sender's deliveries at l's endpoint in order
// while they are due and succeed, up to workerTurn of them; it returns at
// the first failure (its retry is scheduled), when nothing is due, or
// when ctx ends. It records each result without waiting for its commit
// (the lane hides it from later reads meanwhile), so a session's
// deliveries go at the endpoint's speed, not the disk's.
func (o *Outbox) work(ctx context.Context, l *lane, sender string) {
	var ahead []pendingDelivery
	more := true // the last read may have left rows unread
	for range workerTurn {
		if ctx.Err() != nil {
			return
		}
		if len(ahead) == 0 {
			if !more {
				// The session had no more rows when last read; newer ones
				// are found by the dispatcher's next read of the heads,
				// which follows every worker's end.
				return
			}
			var err error
			if ahead, err = o.next(ctx, l, sender); err != nil {
				if ctx.Err() == nil {
					o.log.Warn("webhook outbox: cannot read a delivery", "endpoint", redact(l.ep), "err", err)
				}
				return
			}
			if len(ahead) == 0 {
				return
			}
			more = len(ahead) == readAhead
		}
		d := ahead[0]
		ahead = ahead[1:]
		l.overlay(d.seq, &d.attempts, &d.next)
		if d.next.After(o.now()) {
			return
		}
		if !o.attempt(ctx, l, sender, d) {
			return
		}
	}
}

// next reads sender's first few undelivered deliveries at l's endpoint,
// leaving out those delivered but not yet committed.
func (o *Outbox) next(ctx context.Context, l *lane, sender string) ([]pendingDelivery, error) {
	q, args := o.q.next, []any{o.node, l.ep, sender}
	if lo, hi, ok := l.skip(sender); ok {
		q, args = o.q.nextSkip, []any{o.node, l.ep, sender, lo, hi}
	}
	rows, err := o.stmts.query(ctx, o.db, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []pendingDelivery
	for rows.Next() {
		var d pendingDelivery
		var since, next, ts int64
		if err := rows.Scan(&d.seq, &d.attempts, &since, &next, &d.eventID, &ts, &d.body); err != nil {
			return nil, err
		}
		d.since, d.next, d.eventTS = time.Unix(0, since), time.Unix(0, next), time.Unix(0, ts)
		out = append(out, d)
	}
	return out, rows.Err()
}

// attempt sends d to ep once and records the result; it reports whether
// the endpoint answered 2xx. An attempt cut short by shutdown is not
// recorded: the delivery is sent again after the next start.
func (o *Outbox) attempt(ctx context.Context, l *lane, sender string, d pendingDelivery) bool {
	ep := l.ep
	problem := o.send(ctx, ep, d)
	if ctx.Err() != nil {
		return false
	}
	now := o.now()
	m := mark{seq: d.seq, state: "delivered", attempts: d.attempts + 1, lastError: problem, at: now.UnixNano(),
		doneAt: sql.NullInt64{Int64: now.UnixNano(), Valid: true}}
	if problem != "" {
		m.state, m.next, m.doneAt = "failed", sql.NullInt64{Int64: now.Add(o.backoff(m.attempts)).UnixNano(), Valid: true}, sql.NullInt64{}
		if now.Sub(d.since) >= o.retryFor {
			m.state, m.next = "dead", sql.NullInt64{}
		}
	}
	if !o.record(l, sender, m) {
		return false // closing: sent again after the next start
	}
	switch m.state {
	case "delivered":
		o.observe(ResultDelivered, now.Sub(d.eventTS))
		return true
	case "dead":
		o.observe(ResultFailed, 0)
		o.observe(ResultDead, 0)
		o.log.Warn("webhook delivery is dead: retried for WEBHOOK_RETRY_FOR without a 2xx; POST /api/whatsapp/webhooks/deliveries/{id}/retry sends it again",
			"delivery", deliveryID(d.seq), "endpoint", redact(ep), "attempts", m.attempts, "last_error", problem)
	default:
		o.observe(ResultFailed, 0)
		o.log.Debug("webhook delivery failed; retrying later", "delivery", deliveryID(d.seq), "endpoint", redact(ep),
			"attempts", m.attempts, "next_try_at", time.Unix(0, m.next.Int64), "last_error", problem)
	}
	return false
}

// record queues m for the writer and notes it in the lane until its
// commit ends, without waiting for it; it reports false when the outbox
// no longer takes results (the attempt is repeated after the next start).
// A failed commit is logged by the writer; the lane then forgets m, so
// the delivery is sent again (at least once).
func (o *Outbox) record(l *lane, sender string, m mark) bool {
	l.add(sender, m)
	if !o.enqueue(batchItem{mark: &m, done: func(err error) { l.settle(sender, m, err) }}) {
		l.settle(sender, m, nil)
		return false
	}
	return true
}

func (o *Outbox) observe(result string, d time.Duration) {
	if o.obs != nil {
		o.obs.WebhookAttempt(result, d)
	}
}

// maxAnswer is how much of an endpoint's answer is read (and dropped), so
// the connection can be reused.
const maxAnswer = 64 << 10

// send POSTs d's event to ep, signed, and returns why it was not a
// delivery ("" for a 2xx). The reason never holds the URL (its query may
// carry a token) nor the event.
func (o *Outbox) send(ctx context.Context, ep string, d pendingDelivery) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep, bytes.NewReader(d.body))
	if err != nil {
		return "cannot build the request: " + err.Error()
	}
	ts := time.Now() // the receiver checks it against its own clock
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "whatsapp-sessions-webhooks")
	req.Header.Set("webhook-id", d.eventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", o.sign.sign(d.eventID, ts, d.body))
	resp, err := o.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return fmt.Sprintf("no answer within WEBHOOK_TIMEOUT (%v)", o.timeout)
			}
			err = ue.Err
		}
		return err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	switch {
	case resp.StatusCode/100 == 2:
		return ""
	case resp.StatusCode/100 == 3:
		return fmt.Sprintf("answered %s: redirects are not followed; configure the final URL", resp.Status)
	}
	return "answered " + resp.Status
}
