package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
	"golang.org/x/sync/errgroup"
)

// messagingResult is the messaging scenario: contacts send to connected
// sessions, whose events reach a webhook receiver in the bench; then the
// sessions send to contacts through the API.
type messagingResult struct {
	sessions int
	// Receive phase: contacts' messages to the receiver's 2xx.
	recv msgPhase
	// Events by type the receiver got over the whole run (duplicates
	// included), deliveries whose webhook-id it had seen, bad signatures.
	events                        map[sessions.EventType]int
	duplicates, badSignatures     int
	duplicateIDs                  int // message ids delivered more than once
	delivered, missing            int // of the messages the contacts sent
	maxBehind                     dur // the oldest message sent and not yet delivered, sampled every 100 ms
	maxDepth                      float64
	depthSamples                  int
	deliverySeconds               []float64 // whatsapp_webhook_delivery_seconds buckets (le 0.5, 1, 2.5) and count
	fakeUndecryptable, fakeQueued int
	// recvLater: the messages sent from recvSettled after the phase's
	// first send on, once every contact's first (prekey) message is past.
	recvLater dist
	// Send phase: the API's 200 for POST .../messages.
	send      msgPhase
	sendLater dist // the sends that were not their session's first
	// RSS per session (minus a 0-session service's) once connected and
	// settled, again after both phases and -settle, and once more -msg-rest
	// after both phases (0 when skipped).
	rssBefore, rssAfter, rssRested float64
	shutdown                       dur
	failure                        string
}

// recvSettled is when, after the receive phase's first send, its
// "p99 from 10 s on" starts: each session's contacts send their first
// message, a prekey message, in the phase's first seconds (two contacts
// per session at 1,000/s: the first 2 s), and the backlog that burst
// leaves is gone within ~10 s on 2 cores (BENCHMARKS.md).
const recvSettled = 10 * time.Second

// msgPhase is one open-loop phase: messages at a fixed rate for a while.
type msgPhase struct {
	rate                      int
	duration                  dur
	sent, errors              int
	firstErr                  string
	latency                   dist
	generatorLate             dur // the most a message left after its planned time
	serviceCPU, fakeCPU, self dur // self: the bench's (generator and receiver)
	drained                   dur // from the phase's end to the last delivery (receive phase)
	taken
}

// msgTracker joins the contacts' sends (by message id, when the control
// API answered) with the receiver's arrivals, which may come first.
type msgTracker struct {
	mu      sync.Mutex
	sentAt  map[string]time.Time // message id: the contact's send (the control call's start)
	arrived map[string]time.Time // message id: the receiver's first 2xx
	pending map[string]time.Time // sent, not yet arrived
	count   map[string]int       // message id: deliveries
	hookIDs map[string]bool      // webhook-ids seen
	dups    int                  // deliveries whose webhook-id was seen before
	badSig  int
	events  map[sessions.EventType]int
	last    time.Time // the last message.received arrival
}

func newTracker() *msgTracker {
	return &msgTracker{sentAt: map[string]time.Time{}, arrived: map[string]time.Time{}, pending: map[string]time.Time{},
		count: map[string]int{}, hookIDs: map[string]bool{}, events: map[sessions.EventType]int{}}
}

// sent records that a contact sent message id at t0.
func (t *msgTracker) sent(id string, t0 time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sentAt[id] = t0
	if _, ok := t.arrived[id]; !ok {
		t.pending[id] = t0
	}
}

// forget drops what the tracker knows of the messages sent so far (all
// delivered), keeping the webhook-ids it saw and the events it counted.
func (t *msgTracker) forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.sentAt)
	clear(t.arrived)
	clear(t.pending)
	clear(t.count)
}

// behind is how long the oldest sent, undelivered message has waited.
func (t *msgTracker) behind(now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d time.Duration
	for _, t0 := range t.pending {
		d = max(d, now.Sub(t0))
	}
	return d
}

// undelivered is how many sent messages have not arrived.
func (t *msgTracker) undelivered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// receiver is the webhook endpoint: it verifies each delivery's signature
// with the Standard Webhooks library and records it, then answers 204.
func (t *msgTracker) receiver(secret string) (http.Handler, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev struct {
			Type sessions.EventType `json:"type"`
			ID   string             `json:"id"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := wh.Verify(body, r.Header); err != nil || json.Unmarshal(body, &ev) != nil || ev.ID != r.Header.Get("webhook-id") {
			t.mu.Lock()
			t.badSig++
			t.mu.Unlock()
			http.Error(w, "bad signature or body", http.StatusUnauthorized) // the service retries it later
			return
		}
		now := time.Now()
		t.mu.Lock()
		t.events[ev.Type]++
		if t.hookIDs[ev.ID] {
			t.dups++
		}
		t.hookIDs[ev.ID] = true
		if ev.Type == sessions.EventMessageReceived {
			id := ev.Data.ID
			if t.count[id]++; t.count[id] == 1 {
				t.arrived[id] = now
				delete(t.pending, id)
			}
			t.last = now
		}
		t.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}), nil
}

// pace runs fn(i) for i in [0, rate × d) at start + i/rate, from workers
// goroutines, and returns the most a call started after its planned time.
func pace(ctx context.Context, rate int, d time.Duration, workers int, fn func(i int)) time.Duration {
	total, interval := int(int64(rate)*int64(d)/int64(time.Second)), time.Second/time.Duration(rate)
	start := time.Now()
	var next atomic.Int64
	var late atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < total && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				at := start.Add(time.Duration(i) * interval)
				if w := time.Until(at); w > 0 {
					time.Sleep(w)
				} else {
					storeMax(&late, int64(-w))
				}
				fn(i)
			}
		})
	}
	wg.Wait()
	return time.Duration(late.Load())
}

// storeMax raises v to x if x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for old := v.Load(); x > old; old = v.Load() {
		if v.CompareAndSwap(old, x) {
			return
		}
	}
}

// contactPhone is the j-th fake contact; session i's contacts are i and
// i + n, used in turn.
func contactPhone(j int) string { return fmt.Sprintf("1777%07d", j) }

// eachContact runs f for each of the receive phase's 2n contacts, with
// the session's account (contact j writes to session j mod n) and the
// contact's phone number, eight at a time; it returns the first error.
func eachContact(ctx context.Context, n int, f func(ctx context.Context, j int, user, from string) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for j := range 2 * n {
		g.Go(func() error { return f(ctx, j, sessionUser(j%n), contactPhone(j)) })
	}
	return g.Wait()
}

// prepareContacts makes each of the receive phase's 2n contacts open its
// Signal session with the device of the session it writes to.
func prepareContacts(ctx context.Context, fake *fakeserver.Remote, n int) error {
	return eachContact(ctx, n, func(ctx context.Context, j int, user, from string) error {
		if err := fake.ContactPrepare(ctx, user, from); err != nil {
			return fmt.Errorf("contact %d prepares: %w", j, err)
		}
		return nil
	})
}

// warmContacts has each of the receive phase's 2n contacts send one
// message to the session it writes to, waits until the receiver got them
// all, and makes the tracker forget them: the phase then measures contacts
// the sessions know, whose Signal sessions both sides hold.
func warmContacts(ctx context.Context, fake *fakeserver.Remote, tr *msgTracker, n int) error {
	err := eachContact(ctx, n, func(ctx context.Context, j int, user, from string) error {
		t0 := time.Now()
		id, err := fake.ContactSend(ctx, user, from, fmt.Sprintf("bench warm-up %d", j), "")
		if err != nil {
			return fmt.Errorf("contact %d's warm-up message: %w", j, err)
		}
		tr.sent(id, t0)
		return nil
	})
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(2 * time.Minute); tr.undelivered() > 0; time.Sleep(20 * time.Millisecond) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d warm-up messages not delivered within 2 minutes", tr.undelivered())
		}
	}
	tr.forget()
	return nil
}

// waitFiles waits until the service holds at most limit open files (its
// stores closed when idle), for at most timeout.
func waitFiles(ctx context.Context, api *client.Client, limit float64, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(250 * time.Millisecond) {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := api.Metrics(ctx)
		if err != nil {
			return err
		}
		fds, ok := client.Sample(m, "process_open_fds")
		if !ok {
			return errors.New("the service's /metrics has no process_open_fds")
		}
		if fds <= limit {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the service still held %.0f open files after %v (waiting for at most %.0f)", fds, timeout, limit)
		}
	}
}

// runMessaging is the messaging scenario on n sessions.
func (b *bench) runMessaging(ctx context.Context, n int) (res messagingResult, err error) {
	res.sessions = n
	secret, err := webhooks.NewSecret()
	if err != nil {
		return res, err
	}
	tr := newTracker()
	h, err := tr.receiver(secret)
	if err != nil {
		return res, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	rs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go rs.Serve(ln) //nolint:errcheck // ends with Close
	defer rs.Close()
	env := []string{"WEBHOOK_ALLOW_PRIVATE=true"}
	hidden := []string{"WEBHOOK_URL=http://" + ln.Addr().String() + "/hook", "WEBHOOK_SECRET=" + secret}

	// A service with no session, for the RSS per session.
	base, err := b.startFleet(ctx, 0, env, hidden, 0)
	if err != nil {
		return res, err
	}
	base.measure(ctx, b.settle, nil)
	base.stop()
	if !base.res.measured {
		return res, fmt.Errorf("the 0-session service was not measured: %s", base.res.failure)
	}

	logf("messaging: restoring %d sessions", n)
	fr, err := b.startFleet(ctx, n, env, hidden, 0)
	if err != nil {
		return res, err
	}
	defer func() { fr.stop(); res.shutdown = fr.res.shutdown }()
	if !fr.res.ok {
		return res, fmt.Errorf("service with %d sessions did not get all connected: %s\n%s", n, fr.res.failure, fr.svc.tail(40))
	}
	fr.measure(ctx, b.settle, &base.res)
	res.rssBefore = fr.res.rssPerSession
	logf("messaging: %d connected; RSS %s per session", n, kib(res.rssBefore))
	fake := fakeserver.NewRemote("http://"+fr.fake.control, &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}})
	if b.msgPrepare {
		began := time.Now()
		if err := prepareContacts(ctx, fake, n); err != nil {
			return res, err
		}
		logf("messaging: %d contacts opened their Signal sessions in %v", 2*n, time.Since(began).Round(time.Millisecond))
	}
	if b.msgWarm {
		began := time.Now()
		if err := warmContacts(ctx, fake, tr, n); err != nil {
			return res, err
		}
		logf("messaging: %d contacts wrote once, all delivered, in %v; waiting for the stores to rest", 2*n, time.Since(began).Round(time.Millisecond))
		if err := waitFiles(ctx, fr.svc.api, fr.res.fds+float64(n)/50, 3*time.Minute); err != nil {
			return res, err
		}
		logf("messaging: stores rested %v after the warm-up began", time.Since(began).Round(time.Second))
	}
	stopSampling := b.sampleQueue(ctx, fr.svc.api, &res)

	// Contacts send.
	pr := &res.recv
	pr.rate, pr.duration = b.msgRate, dur(b.msgDuration)
	var mu sync.Mutex
	w := startPhase(fr)
	stopBehind := sampleBehind(tr, &res.maxBehind)
	pr.generatorLate = dur(pace(ctx, b.msgRate, b.msgDuration, 256, func(i int) {
		user, from := sessionUser(i%n), contactPhone(i%(2*n))
		t0 := time.Now()
		id, err := fake.ContactSend(ctx, user, from, fmt.Sprintf("bench message %d", i), "")
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			pr.errors++
			pr.firstErr = cmp.Or(pr.firstErr, err.Error())
			return
		}
		pr.sent++
		tr.sent(id, t0)
	}))
	sentEnd := time.Now()
	logf("messaging: contacts sent %d (%d errors); waiting for the receiver to get them", pr.sent, pr.errors)
	for deadline := time.Now().Add(2 * time.Minute); tr.undelivered() > 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	stopBehind()
	w.end(pr)
	tr.mu.Lock()
	pr.drained = dur(max(tr.last.Sub(sentEnd), 0))
	var lats, settled []time.Duration
	var firstSent time.Time
	for _, t0 := range tr.sentAt {
		if firstSent.IsZero() || t0.Before(firstSent) {
			firstSent = t0
		}
	}
	for id, t0 := range tr.sentAt {
		if at, ok := tr.arrived[id]; ok {
			lats = append(lats, at.Sub(t0))
			if t0.Sub(firstSent) >= recvSettled {
				settled = append(settled, at.Sub(t0))
			}
			res.delivered++
			if tr.count[id] > 1 {
				res.duplicateIDs++
			}
		}
	}
	res.missing = len(tr.pending)
	writeTimeline(filepath.Join(b.work, "logs", "messaging-timeline.csv"), tr.sentAt, tr.arrived)
	tr.mu.Unlock()
	pr.latency, res.recvLater = summarize(lats), summarize(settled)
	logf("messaging: %d of %d delivered, p50 %v, p99 %v, max %v; others %.0f%%", res.delivered, pr.sent,
		pr.latency.p50, pr.latency.p99, pr.latency.max, 100*pr.othersShare)

	// Sessions send.
	ps := &res.send
	ps.rate, ps.duration = b.sendRate, dur(b.sendDuration)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true,
		IdleConnTimeout: client.IdleConnTimeout}}
	defer hc.CloseIdleConnections()
	api := client.New("http://"+fr.svc.addr, b.apiKey).WithHTTPClient(hc)
	var lats2, later []time.Duration
	var sendRows bytes.Buffer // the send timeline: start (s from the phase's), latency (s)
	sendRows.WriteString("sent_s,latency_s\n")
	firstDone := make([]atomic.Bool, n)
	w = startPhase(fr)
	sendStart := time.Now()
	ps.generatorLate = dur(pace(ctx, b.sendRate, b.sendDuration, 512, func(i int) {
		s := i % n
		first := firstDone[s].CompareAndSwap(false, true)
		t0 := time.Now()
		req := sessions.SendRequest{To: "+" + contactPhone(s), Text: fmt.Sprintf("bench reply %d", i)}
		if b.sendKeys {
			req.IdempotencyKey = fmt.Sprintf("bench-%d", i)
		}
		_, err := api.Send(ctx, sessionID(s), req)
		lat := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			ps.errors++
			ps.firstErr = cmp.Or(ps.firstErr, err.Error())
			return
		}
		ps.sent++
		lats2 = append(lats2, lat)
		fmt.Fprintf(&sendRows, "%.3f,%.4f\n", t0.Sub(sendStart).Seconds(), lat.Seconds())
		if !first {
			later = append(later, lat)
		}
	}))
	w.end(ps)
	// The load generator is done: its idle keep-alive connections (up to
	// 512, each holding the server's buffers and goroutine until the
	// server's idle timeout) are not the sessions' memory.
	hc.CloseIdleConnections()
	ps.latency, res.sendLater = summarize(lats2), summarize(later)
	if err := os.WriteFile(filepath.Join(b.work, "logs", "messaging-send-timeline.csv"), sendRows.Bytes(), 0o644); err != nil {
		logf("messaging: send timeline: %v", err)
	}
	logf("messaging: sessions sent %d (%d errors), p50 %v, p99 %v", ps.sent, ps.errors, ps.latency.p50, ps.latency.p99)
	stopSampling()

	// Once settled: memory, the fake's view, what the receiver got.
	phasesEnd := time.Now()
	time.Sleep(b.settle)
	rssPerSession := func() float64 {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		m, err := fr.svc.api.Metrics(mctx)
		if err != nil {
			return 0
		}
		rss, _ := client.Sample(m, "process_resident_memory_bytes")
		return (rss - base.res.rss) / float64(n)
	}
	res.rssAfter = rssPerSession()
	if b.msgRest > b.settle {
		time.Sleep(time.Until(phasesEnd.Add(b.msgRest)))
		res.rssRested = rssPerSession()
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if st, err := fake.Stats(mctx); err == nil {
		res.fakeUndecryptable, res.fakeQueued = st.Undecryptable, st.Queued
	}
	tr.mu.Lock()
	res.events, res.duplicates, res.badSignatures = tr.events, tr.dups, tr.badSig
	tr.mu.Unlock()
	select {
	case <-fr.svc.exited:
		res.failure = fmt.Sprintf("the service exited during the measurements (%v)", fr.svc.waitErr)
	default:
	}
	return res, nil
}

// writeTimeline writes each message's send (seconds from the first) and
// latency (seconds; empty if it never arrived), in order of sending, for
// a look at how the latency moved over a run.
func writeTimeline(path string, sentAt, arrived map[string]time.Time) {
	type row struct{ sent, arrived time.Time }
	rows := make([]row, 0, len(sentAt))
	for id, t0 := range sentAt {
		rows = append(rows, row{t0, arrived[id]})
	}
	slices.SortFunc(rows, func(a, b row) int { return a.sent.Compare(b.sent) })
	var buf bytes.Buffer
	buf.WriteString("sent_s,latency_s\n")
	for _, r := range rows {
		fmt.Fprintf(&buf, "%.3f,", r.sent.Sub(rows[0].sent).Seconds())
		if !r.arrived.IsZero() {
			fmt.Fprintf(&buf, "%.3f", r.arrived.Sub(r.sent).Seconds())
		}
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		logf("messaging: timeline: %v", err)
	}
}

// phase measures the CPU of the service, the fake server and the bench,
// and others' share, over a phase.
type phase struct {
	fr              *fleetRun
	svc, fake, self time.Duration
	others          func() taken
}

// startPhase starts measuring a phase of fr.
func startPhase(fr *fleetRun) *phase {
	p := &phase{fr: fr, others: startWindow(fr.svc.pid(), fr.fake.pid())}
	p.svc, p.fake, p.self = cpu(fr.svc.pid()), cpu(fr.fake.pid()), cpu(0)
	return p
}

// end fills r's CPU figures.
func (p *phase) end(r *msgPhase) {
	r.taken = p.others()
	r.serviceCPU, r.fakeCPU, r.self = dur(cpu(p.fr.svc.pid())-p.svc), dur(cpu(p.fr.fake.pid())-p.fake), dur(cpu(0)-p.self)
}

// cpu is pid's user and kernel CPU time; pid 0 is the bench.
func cpu(pid int) time.Duration {
	u, s := cpuTimes(cmp.Or(pid, os.Getpid()))
	return u + s
}

// sampleBehind samples the tracker's oldest undelivered message every
// 100 ms into *most until the returned stop is called.
func sampleBehind(tr *msgTracker, most *dur) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				*most = max(*most, dur(tr.behind(now)))
			}
		}
	}()
	return func() { close(quit); <-done }
}

// queueEvery is how often the outbox's queue depth is read from /metrics
// (a scrape of 1,000 sessions costs the service tens of milliseconds).
const queueEvery = 5 * time.Second

// sampleQueue reads whatsapp_webhook_queue_depth every queueEvery into
// res until the returned stop is called, which also reads the delivery
// histogram once.
func (b *bench) sampleQueue(ctx context.Context, api *client.Client, res *messagingResult) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	read := func() {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		m, err := api.Metrics(mctx)
		if err != nil {
			return
		}
		if v, ok := client.Sample(m, "whatsapp_webhook_queue_depth"); ok {
			res.maxDepth, res.depthSamples = max(res.maxDepth, v), res.depthSamples+1
		}
		if f := m["whatsapp_webhook_delivery_seconds"]; f != nil && len(f.GetMetric()) > 0 {
			h := f.GetMetric()[0].GetHistogram()
			res.deliverySeconds = res.deliverySeconds[:0]
			for _, bk := range h.GetBucket() {
				if le := bk.GetUpperBound(); le == 0.5 || le == 1 || le == 2.5 {
					res.deliverySeconds = append(res.deliverySeconds, float64(bk.GetCumulativeCount()))
				}
			}
			res.deliverySeconds = append(res.deliverySeconds, float64(h.GetSampleCount()))
		}
	}
	go func() {
		defer close(done)
		t := time.NewTicker(queueEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() { close(quit); <-done; read() }
}
