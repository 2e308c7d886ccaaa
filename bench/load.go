package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
)

// loadResult is one closed-loop load phase: clients goroutines each send
// a request, wait for its answer, and send the next, for a fixed time.
type loadResult struct {
	Name     string  `json:"name"`
	Sessions int     `json:"sessions"`
	Clients  int     `json:"clients"`
	Duration dur     `json:"durationMs"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	FirstErr string  `json:"firstError,omitempty"`
	RPS      float64 `json:"requestsPerSecond"`
	Bytes    int64   `json:"bytesPerResponse"`
	Latency  dist    `json:"latency"`
	taken
}

// loadPhase describes one phase: path picks the URL path of each request.
type loadPhase struct {
	name    string
	clients int
	path    func(r *rand.Rand) string
}

// runLoad drives phase against the service at base for warmup (not
// recorded) plus d. Answers are read to the end, not
// decoded: the generator shares the machine's cores with the service and
// must spend as little as it can.
func runLoad(ctx context.Context, base, key string, sessions int, phase loadPhase, warmup, d time.Duration) loadResult {
	hc := &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        phase.clients,
			MaxIdleConnsPerHost: phase.clients,
			MaxConnsPerHost:     phase.clients,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
	defer hc.CloseIdleConnections()
	c := client.New(base, key).WithHTTPClient(hc)

	start := time.Now().Add(warmup)
	end := start.Add(d)
	type worker struct {
		lat      []time.Duration
		errs     int
		firstErr string
		bytes    int64
	}
	workers := make([]worker, phase.clients)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			me := &workers[w]
			r := rand.New(rand.NewPCG(uint64(w), 42))
			me.lat = make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				resp, err := c.Do(ctx, http.MethodGet, phase.path(r), nil, nil)
				lat := time.Since(t0)
				if err == nil && resp.Status != http.StatusOK {
					err = fmt.Errorf("HTTP %d", resp.Status)
				}
				if t0.Before(start) {
					continue
				}
				if err != nil {
					me.errs++
					if me.firstErr == "" {
						me.firstErr = err.Error()
					}
					continue
				}
				me.lat = append(me.lat, lat)
				me.bytes = int64(len(resp.Body))
			}
		})
	}
	wg.Wait()

	res := loadResult{Name: phase.name, Sessions: sessions, Clients: phase.clients, Duration: dur(d)}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Errors += w.errs
		if res.FirstErr == "" {
			res.FirstErr = w.firstErr
		}
		res.Bytes = max(res.Bytes, w.bytes)
	}
	res.Requests = len(all)
	res.RPS = float64(len(all)) / d.Seconds()
	res.Latency = summarize(all)
	return res
}

// loadPhases are scenario 2's phases over ids: single-session status at
// each of singleClients, then the whole fleet's status at fleetClients.
func loadPhases(ids []string, singleClients []int, fleetClients int) []loadPhase {
	var phases []loadPhase
	single := func(r *rand.Rand) string { return "/api/whatsapp/session/" + ids[r.IntN(len(ids))] + "/status" }
	for _, c := range singleClients {
		phases = append(phases, loadPhase{name: "session status", clients: c, path: single})
	}
	if fleetClients > 0 {
		phases = append(phases, loadPhase{name: "all-sessions status", clients: fleetClients,
			path: func(*rand.Rand) string { return "/api/whatsapp/sessions/status" }})
	}
	return phases
}
