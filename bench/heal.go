package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// healResult is how fast sessions came back after one kind of injected
// failure, over many runs, each on its own session.
type healResult struct {
	Kind       string `json:"kind"`       // panic or drop
	BackoffMin string `json:"backoffMin"` // the service's BACKOFF_MIN
	Sessions   int    `json:"sessions"`   // sessions connected in the service
	Runs       int    `json:"runs"`
	Failed     int    `json:"failed"`
	FirstErr   string `json:"firstError,omitempty"`
	// Service is injection to the lastConnectedAt the service reports for
	// the session's new connection; Observed is injection to the poll that
	// first saw it connected again (adds up to one poll interval).
	Service  dist `json:"service"`
	Observed dist `json:"observed"`
	// StaleConnected counts runs in which a poll saw the session
	// "connected" although the manager had already recorded the actor's
	// restart (restarts went up) and the new connection did not exist yet.
	StaleConnected int `json:"staleConnected"`
	Elapsed        dur `json:"elapsedMs"` // all runs, start to end
	Poll           dur `json:"pollMs"`
	Concurrency    int `json:"concurrency"`
	taken
}

// runHeal injects kind ("panic" or "drop", through the test routes) into
// runs sessions, concurrency at a time, starting at ids[first] and
// walking on, and times each until its status is connected again on a new
// connection. A session is used once, so each run sees a fresh backoff
// (first retry at BACKOFF_MIN) and a fresh restart budget.
func runHeal(ctx context.Context, api *client.Client, kind, backoffMin string, ids []string, first, runs, concurrency int, poll time.Duration) healResult {
	res := healResult{Kind: kind, BackoffMin: backoffMin, Sessions: len(ids), Runs: runs, Poll: dur(poll), Concurrency: concurrency}
	began := time.Now()
	defer func() { res.Elapsed = dur(time.Since(began)) }()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		service  []time.Duration
		observed []time.Duration
		wg       sync.WaitGroup
	)
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= runs {
					return
				}
				id := ids[(first+j)%len(ids)]
				svc, obs, stale, err := healOnce(ctx, api, id, kind, poll)
				mu.Lock()
				if err != nil {
					res.Failed++
					if res.FirstErr == "" {
						res.FirstErr = fmt.Sprintf("%s: %v", id, err)
					}
				} else {
					service, observed = append(service, svc), append(observed, obs)
				}
				if stale {
					res.StaleConnected++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Service, res.Observed = summarize(service), summarize(observed)
	return res
}

// healTimeout bounds one heal run.
const healTimeout = 60 * time.Second

// healOnce injects kind into session id and polls its status until it is
// connected on a connection made after the injection.
func healOnce(ctx context.Context, api *client.Client, id, kind string, poll time.Duration) (service, observed time.Duration, stale bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, healTimeout)
	defer cancel()
	before, err := api.Status(ctx, id)
	if err != nil {
		return 0, 0, false, err
	}
	if before.State != "connected" {
		return 0, 0, false, fmt.Errorf("not connected before the %s: %s", kind, before.State)
	}
	t0 := time.Now()
	if _, err := api.Test(ctx, id, kind, sessions.TestParams{}); err != nil {
		return 0, 0, false, err
	}
	for {
		st, err := api.Status(ctx, id)
		if err != nil {
			return 0, 0, stale, err
		}
		seen := time.Since(t0)
		if st.State == "connected" && st.LastConnectedAt != nil && st.LastConnectedAt.After(t0) {
			return st.LastConnectedAt.Sub(t0), seen, stale, nil
		}
		if st.State == "connected" && st.Restarts > before.Restarts {
			stale = true
		}
		select {
		case <-ctx.Done():
			return 0, 0, stale, fmt.Errorf("not connected again within %v (state %s)", healTimeout, st.State)
		case <-time.After(poll):
		}
	}
}
