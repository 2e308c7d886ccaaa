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
	"strconv"
	"time"
)

// head is a session's first undelivered delivery at an endpoint.
type head struct {
	seq      int64
	senderID string
	next     time.Time
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
func (o *Outbox) dispatch(ctx context.Context, ep string, wake <-chan struct{}) {
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
				o.work(ctx, ep, sender)
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
		heads, err := o.heads(ctx, ep)
		gap := max(minQueryGap, 10*time.Since(start))
		next := time.Hour
		if err != nil && ctx.Err() == nil {
			o.log.Warn("webhook outbox: cannot read the queue; trying again in a second", "endpoint", redact(ep), "err", err)
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
		if !wait(next, wake) {
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

// heads lists each session's first undelivered delivery at ep.
func (o *Outbox) heads(ctx context.Context, ep string) ([]head, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT d.seq, d.sender_id, d.next_try_at FROM deliveries d
		JOIN (SELECT min(seq) AS seq FROM deliveries WHERE endpoint = ? AND `+active+` GROUP BY sender_id) h ON d.seq = h.seq
		ORDER BY d.seq`, ep) // the longest waiting first, when the workers are all busy
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []head
	for rows.Next() {
		var h head
		var next sql.NullInt64
		if err := rows.Scan(&h.seq, &h.senderID, &next); err != nil {
			return nil, err
		}
		h.next = time.Unix(0, next.Int64)
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

// work delivers session sender's deliveries at ep in order while they are
// due and succeed, up to workerTurn of them; it returns at the first
// failure (its retry is scheduled), when nothing is due, or when ctx ends.
func (o *Outbox) work(ctx context.Context, ep, sender string) {
	for range workerTurn {
		if ctx.Err() != nil {
			return
		}
		d, ok, err := o.next(ctx, ep, sender)
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("webhook outbox: cannot read a delivery", "endpoint", redact(ep), "err", err)
			}
			return
		}
		if !ok || d.next.After(o.now()) {
			return
		}
		if !o.attempt(ctx, ep, d) {
			return
		}
	}
}

// next is sender's first undelivered delivery at ep.
func (o *Outbox) next(ctx context.Context, ep, sender string) (pendingDelivery, bool, error) {
	var d pendingDelivery
	var since, next, ts int64
	err := o.db.QueryRowContext(ctx, `SELECT d.seq, d.attempts, d.since, coalesce(d.next_try_at, 0), e.id, e.ts, e.body
		FROM deliveries d JOIN events e ON e.seq = d.event_seq
		WHERE d.endpoint = ? AND d.sender_id = ? AND d.`+active+` ORDER BY d.seq LIMIT 1`, ep, sender).
		Scan(&d.seq, &d.attempts, &since, &next, &d.eventID, &ts, &d.body)
	if errors.Is(err, sql.ErrNoRows) {
		return d, false, nil
	}
	if err != nil {
		return d, false, err
	}
	d.since, d.next, d.eventTS = time.Unix(0, since), time.Unix(0, next), time.Unix(0, ts)
	return d, true, nil
}

// attempt sends d to ep once and records the result; it reports whether
// the endpoint answered 2xx. An attempt cut short by shutdown is not
// recorded: the delivery is sent again after the next start.
func (o *Outbox) attempt(ctx context.Context, ep string, d pendingDelivery) bool {
	problem := o.send(ctx, ep, d)
	if ctx.Err() != nil {
		return false
	}
	now := o.now()
	m := mark{seq: d.seq, state: "delivered", attempts: d.attempts + 1, lastError: problem, at: now.UnixNano()}
	if problem != "" {
		m.state, m.next = "failed", sql.NullInt64{Int64: now.Add(o.backoff(m.attempts)).UnixNano(), Valid: true}
		if now.Sub(d.since) >= o.retryFor {
			m.state, m.next = "dead", sql.NullInt64{}
		}
	}
	if err := o.record(m); err != nil {
		// Sent but not recorded: it is tried again (at least once).
		o.log.Warn("webhook outbox: cannot record an attempt; it will be tried again", "endpoint", redact(ep), "err", err)
		return false
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

// record has the writer commit m and waits for it: the session's next
// delivery is read only after this one's result is in the database.
func (o *Outbox) record(m mark) error {
	done := make(chan error, 1)
	if !o.enqueue(batchItem{mark: &m, done: func(err error) { done <- err }}) {
		return ErrClosed
	}
	return <-done
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
