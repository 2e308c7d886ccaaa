package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	_ "modernc.org/sqlite" // reads the service's outbox, read-only

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// streamResult is one run of the stream scenario: a fresh service
// restores N stored sessions while k clients read the live event stream.
type streamResult struct {
	sessions, clients int
	failure           string
	// restoreTook: the restore's start to its end, as the service stamps
	// them; serviceCPU: the service's user + kernel CPU from the restore
	// request to its end.
	restoreTook, serviceCPU dur
	// serviceCPUAll and benchCPU (the clients): from the restore request
	// until every client had every event (or the restore's end without
	// clients).
	serviceCPUAll, benchCPU dur
	taken
	// announced: session.state events the service committed to its
	// outbox (so announced) by the check; got: what each client received
	// (min and max over the clients); same: how many clients received
	// exactly the reference client's sequence (ids and data).
	announced, gotMin, gotMax, same int
	// reconnects: streams the service ended that the clients reopened
	// with Last-Event-ID (all clients); resets: reset events they got.
	reconnects, resets int
	// delivered: from the restore request until every client first had
	// every announced event (polled every 50 ms); it must still hold
	// -settle later.
	delivered dur
	dropped   float64 // whatsapp_events_stream_dropped_total
	shutdown  dur
}

// streamReader is one client of the stream: what it received. Like a
// real client, it reconnects with Last-Event-ID when the service ends its
// stream (it fell too far behind).
type streamReader struct {
	mu         sync.Mutex
	states     int    // session.state events
	sum        uint64 // FNV-1a of every event's id, type and data, in order
	reconnects int
	resets     int   // reset events: events it missed for good
	err        error // why it stopped reading early
}

// read reads the stream s, and its continuations, until ctx ends.
func (r *streamReader) read(ctx context.Context, c *client.Client, s *client.EventStream) {
	h := fnv.New64a()
	for {
		ev, err := s.Next()
		if err != nil {
			s.Close()
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, io.EOF) {
				s, err = c.Events(ctx, client.EventsOptions{LastEventID: s.LastEventID()})
			}
			r.mu.Lock()
			r.reconnects++
			r.err = err
			r.mu.Unlock()
			if err != nil {
				return
			}
			continue
		}
		_, _ = io.WriteString(h, ev.ID+"\n"+ev.Type+"\n"+string(ev.Data)+"\n")
		r.mu.Lock()
		switch ev.Type {
		case string(sessions.EventSessionState):
			r.states++
		case "reset":
			r.resets++
		}
		r.sum = h.Sum64()
		r.mu.Unlock()
	}
}

// get is what r received so far.
func (r *streamReader) get() (states int, sum uint64, reconnects, resets int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states, r.sum, r.reconnects, r.resets, r.err
}

// runStream restores n stored sessions in a fresh service (restore asked
// for by the bench, so that the clients are connected before the first
// event) while k clients read GET /api/whatsapp/events, and checks that
// every client got every session.state event the service committed.
func (b *bench) runStream(ctx context.Context, n, k int) (res streamResult, err error) {
	res.sessions, res.clients = n, k
	// Room for the most clients of any run (half the cap may be streams)
	// and the bench's own requests: the same settings in every run.
	env := []string{"AUTO_RESTORE_SESSIONS=false", fmt.Sprintf("HTTP_MAX_CONNS=%d", 2*slices.Max(append(b.streamClients, 0))+64)}
	fr, err := b.startFleet(ctx, n, env, nil, 0)
	if err != nil {
		return res, err
	}
	defer func() { fr.stop(); res.shutdown = fr.res.shutdown }()
	if fr.res.failure != "" {
		return res, fmt.Errorf("service: %s", fr.res.failure)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: k, DisableCompression: true}} // no timeout: it would cut the streams
	sc := client.New("http://"+fr.svc.addr, b.apiKey).WithHTTPClient(hc)
	readers := make([]*streamReader, k)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range readers {
		s, err := sc.Events(sctx, client.EventsOptions{})
		if err != nil {
			return res, fmt.Errorf("stream client %d: %w", i, err)
		}
		r := &streamReader{}
		readers[i] = r
		wg.Add(1)
		go func() { defer wg.Done(); r.read(sctx, sc, s) }()
	}

	began, cpu0, self0 := time.Now(), cpu(fr.svc.pid()), cpu(0)
	window := startWindow(fr.svc.pid(), fr.fake.pid())
	if err := fr.svc.api.Restore(ctx); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	fr.waitRestore(ctx)
	res.taken = window()
	res.restoreTook, res.serviceCPU = fr.res.restoreTook, fr.res.serviceCPU-dur(cpu0)
	if fr.res.failure != "" {
		return res, fmt.Errorf("restore: %s", fr.res.failure)
	}

	// Every client has every announced event once the counts stop moving
	// and agree with the outbox. A client cut off would stay behind.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(fr.runDir, "outbox.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return res, err
	}
	defer db.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE type = ?`, string(sessions.EventSessionState)).Scan(&res.announced); err != nil {
			return res, fmt.Errorf("count the outbox's events: %w", err)
		}
		res.gotMin, res.gotMax = -1, 0
		for _, r := range readers {
			got, _, _, _, _ := r.get()
			if res.gotMin < 0 || got < res.gotMin {
				res.gotMin = got
			}
			res.gotMax = max(res.gotMax, got)
		}
		if k == 0 || (res.gotMin == res.announced && res.gotMax == res.announced) {
			if res.delivered == 0 {
				res.delivered = dur(time.Since(began))
				res.serviceCPUAll, res.benchCPU = dur(cpu(fr.svc.pid())-cpu0), dur(cpu(0)-self0)
			}
			// Late events (a push name after connected) must arrive too.
			if time.Since(began) >= time.Duration(res.delivered)+b.settle {
				break
			}
		}
		if time.Now().After(deadline) {
			res.failure = fmt.Sprintf("after 2 min the clients had %d to %d of %d announced state events", res.gotMin, res.gotMax, res.announced)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if k > 0 {
		_, want, _, _, _ := readers[0].get()
		for i, r := range readers {
			_, sum, reconnects, resets, err := r.get()
			if sum == want {
				res.same++
			}
			res.reconnects += reconnects
			res.resets += resets
			if err != nil && res.failure == "" {
				res.failure = fmt.Sprintf("client %d: %v", i, err)
			}
		}
	}
	mctx, mcancel := context.WithTimeout(ctx, 30*time.Second)
	defer mcancel()
	if m, err := fr.svc.api.Metrics(mctx); err == nil {
		res.dropped, _ = client.Sample(m, "whatsapp_events_stream_dropped_total")
	}
	logf("stream: %d sessions, %d clients: restore took %v, service CPU %v; %d state events announced, clients got %d..%d, %d identical, %d reconnects, %d resets; all delivered %v after the request",
		n, k, res.restoreTook, res.serviceCPU, res.announced, res.gotMin, res.gotMax, res.same, res.reconnects, res.resets, res.delivered)
	return res, nil
}

// writeStreams prints the stream scenario's figures.
func writeStreams(w io.Writer, rs []streamResult) {
	var rows [][]any
	var failures []string
	for _, r := range rs {
		per, got, same, delivered := "-", "-", "-", "-"
		if r.sessions > 0 {
			per = fmt.Sprintf("%.2fms", float64(time.Duration(r.serviceCPU))/float64(time.Millisecond)/float64(r.sessions))
		}
		if r.clients > 0 {
			got, same, delivered = fmt.Sprintf("%d..%d", r.gotMin, r.gotMax), fmt.Sprintf("%d/%d", r.same, r.clients), r.delivered.String()
		}
		rows = append(rows, []any{r.sessions, r.clients, r.restoreTook, r.serviceCPU, per, r.announced, got, same, r.dropped,
			r.reconnects, r.resets, delivered, r.serviceCPUAll, r.benchCPU, others(r.taken), r.shutdown})
		if r.failure != "" {
			failures = append(failures, fmt.Sprintf("  %d sessions, %d clients FAILED: %s", r.sessions, r.clients, r.failure))
		}
	}
	table(w, "Restore of N stored sessions while k clients read GET /api/whatsapp/events (restore requested once the clients are connected)",
		"sessions,clients,restore took,service CPU,per session,state events announced,per client,identical to client 0,dropped,reconnects,resets,all delivered after,service CPU to then,bench CPU to then,others,shutdown", rows)
	for _, f := range failures {
		fmt.Fprintln(w, f)
	}
}
