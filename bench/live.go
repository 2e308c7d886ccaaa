package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"golang.org/x/sync/errgroup"
)

// loadResult is one closed-loop load phase: clients goroutines each send
// a request, wait for its answer, and send the next, for a fixed time.
type loadResult struct {
	name                                       string
	sessions, clients, requests, errors, bytes int // bytes: of a response
	firstErr                                   string
	duration                                   dur
	rps                                        float64
	latency                                    dist
	taken
}

// healResult is how fast sessions came back after one kind of injected
// failure ("panic" or "drop"), over many runs, each on its own session.
type healResult struct {
	kind, backoffMin, firstErr string
	runs, failed               int
	// From the injection to the new connection's lastConnectedAt (service),
	// and to the poll that first saw it (observed).
	service, observed dist
	// Runs in which a poll saw "connected" although the actor had already
	// restarted and the new connection did not exist yet.
	staleConnected int
	taken
}

// runLive starts a service with -load-sessions connected sessions and runs
// the load phases (if load) and the heal runs (if wanted) against it.
func (b *bench) runLive(ctx context.Context, rep *report, env []string, backoff string, load bool) error {
	n := b.loadSessions
	fr, err := b.startFleet(ctx, n, env, nil, 0)
	if err != nil {
		return err
	}
	defer fr.stop()
	if !fr.res.ok {
		return fmt.Errorf("service with %d sessions (%v) did not get all connected: %s\n%s", n, env, fr.res.failure, fr.svc.tail(40))
	}
	logf("live service: %d sessions connected %v after start (BACKOFF_MIN %s)", n, fr.res.allConnected, backoff)
	if load {
		for i, c := range append(slices.Clip(b.clients), b.fleetClients) {
			name, path := "session status", func(r *rand.Rand) string { return "/api/whatsapp/session/" + sessionID(r.IntN(n)) + "/status" }
			if i == len(b.clients) {
				name, path = "all-sessions status", func(*rand.Rand) string { return "/api/whatsapp/sessions/status" }
			}
			if c == 0 {
				continue
			}
			w := startWindow(fr.svc.pid(), fr.fake.pid())
			r := runLoad(ctx, "http://"+fr.svc.addr, b.apiKey, c, path, b.duration)
			r.name, r.sessions, r.taken = name, n, w()
			logf("load: %s, %d clients: %.0f req/s, p50 %v, p99 %v, %d errors, others %.0f%%", name, c, r.rps, r.latency.p50, r.latency.p99, r.errors, 100*r.othersShare)
			rep.loads = append(rep.loads, r)
		}
	}
	if b.scenarios["heal"] {
		// Each run uses a session of its own (a session dropped twice within
		// BACKOFF_RESET waits longer the second time): panics the first
		// half of the sessions, drops the second.
		for i, kind := range []string{"panic", "drop"} {
			w := startWindow(fr.svc.pid(), fr.fake.pid())
			r := runHeal(ctx, fr.svc.api, kind, n, i*n/2, b.healRuns)
			r.backoffMin, r.taken = backoff, w()
			logf("heal: %d × %s, BACKOFF_MIN %s: p50 %v, p99 %v, %d failed, others %.0f%%", b.healRuns, kind, backoff, r.service.p50, r.service.p99, r.failed, 100*r.othersShare)
			rep.heals = append(rep.heals, r)
		}
	}
	select {
	case <-fr.svc.exited:
		return fmt.Errorf("the service exited during the measurements (%v)", fr.svc.waitErr)
	default:
		return nil
	}
}

// runLoad drives clients goroutines against base for 1 s (not recorded)
// plus d, each request to path(r). Answers are read, not
// decoded: the generator shares the machine's cores with the service.
func runLoad(ctx context.Context, base, key string, clients int, path func(*rand.Rand) string, d time.Duration) loadResult {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients,
		MaxConnsPerHost: clients, IdleConnTimeout: time.Minute, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	c := client.New(base, key).WithHTTPClient(hc)
	start := time.Now().Add(time.Second) // warm-up, not recorded
	end := start.Add(d)
	res := loadResult{clients: clients, duration: dur(d)}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
	)
	for w := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for t0 := time.Now(); ctx.Err() == nil && t0.Before(end); t0 = time.Now() {
				resp, err := c.Do(ctx, http.MethodGet, path(r), nil, nil)
				lat := time.Since(t0)
				if err == nil && resp.Status != http.StatusOK {
					err = fmt.Errorf("HTTP %d", resp.Status)
				}
				if t0.Before(start) {
					continue
				}
				mu.Lock()
				if err != nil {
					res.errors++
					res.firstErr = cmp.Or(res.firstErr, err.Error())
				} else {
					lats, res.bytes = append(lats, lat), len(resp.Body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.requests, res.rps, res.latency = len(lats), float64(len(lats))/d.Seconds(), summarize(lats)
	return res
}

// runHeal injects kind ("panic" or "drop", through the test routes) into
// runs of the n sessions, 4 at a time, from the first-th on, and times
// each until its status is connected again on a new connection.
func runHeal(ctx context.Context, api *client.Client, kind string, n, first, runs int) healResult {
	res := healResult{kind: kind, runs: runs}
	var (
		mu                sync.Mutex
		service, observed []time.Duration
		g                 errgroup.Group
	)
	g.SetLimit(4)
	for j := 0; j < runs && ctx.Err() == nil; j++ {
		g.Go(func() error {
			id := sessionID((first + j) % n)
			svc, obs, stale, err := healOnce(ctx, api, id, kind)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.failed++
				res.firstErr = cmp.Or(res.firstErr, fmt.Sprintf("%s: %v", id, err))
			} else {
				service, observed = append(service, svc), append(observed, obs)
			}
			if stale {
				res.staleConnected++
			}
			return nil
		})
	}
	_ = g.Wait()
	res.service, res.observed = summarize(service), summarize(observed)
	return res
}

// healOnce injects kind into session id and polls its status until it is
// connected on a connection made after the injection.
func healOnce(ctx context.Context, api *client.Client, id, kind string) (service, observed time.Duration, stale bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, healTimeout)
	defer cancel()
	before, err := api.Status(ctx, id)
	if err == nil && before.State != sessions.StateConnected {
		err = fmt.Errorf("not connected before the %s: %s", kind, before.State)
	}
	t0 := time.Now()
	if err == nil {
		_, err = api.Test(ctx, id, kind, sessions.TestParams{})
	}
	if err != nil {
		return 0, 0, false, err
	}
	for {
		st, err := api.Status(ctx, id)
		if err != nil {
			return 0, 0, stale, err
		}
		seen := time.Since(t0)
		if st.State == sessions.StateConnected && st.LastConnectedAt != nil && st.LastConnectedAt.After(t0) {
			return st.LastConnectedAt.Sub(t0), seen, stale, nil
		}
		stale = stale || st.State == sessions.StateConnected && st.Restarts > before.Restarts
		select {
		case <-ctx.Done():
			return 0, 0, stale, fmt.Errorf("not connected again within %v (state %s)", healTimeout, st.State)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// dist summarises a set of durations (nearest-rank percentiles).
type dist struct{ min, p50, p90, p99, max dur }

// summarize sorts ds and returns its distribution.
func summarize(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	slices.Sort(ds)
	at := func(p float64) dur { return dur(ds[min(max(int(p*float64(len(ds))+0.999999)-1, 0), len(ds)-1)]) }
	return dist{min: dur(ds[0]), p50: at(0.50), p90: at(0.90), p99: at(0.99), max: dur(ds[len(ds)-1])}
}
