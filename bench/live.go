package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// runLive starts a service with n connected sessions and runs the load
// phases (if load) and the heal runs (if heal) against it. Each
// measurement is retried while other processes took too much of the
// machine during it (see cleanest).
func runLive(ctx context.Context, b *bench, rep *report, env []string, backoff string, load, heal bool, s scenarios) error {
	n := s.loadSessions
	fr, err := startFleet(ctx, b, n, env, 0)
	if err != nil {
		return err
	}
	defer fr.stop(b)
	if !fr.res.OK {
		return fmt.Errorf("service with %d sessions (%s) did not get all connected: %s\n%s", n,
			strings.Join(env, " "), fr.res.Failure, strings.Join(fr.svc.lastLines(), "\n"))
	}
	b.logf("live service: %d sessions connected %v after start (%s)", n, fr.res.AllConnected, backoff)
	base := "http://" + fr.svc.addr
	if load {
		for _, p := range loadPhases(fr.ids, s.clients, s.fleetClients) {
			r, err := cleanest(ctx, b, fmt.Sprintf("load: %s, %d clients, %v", p.name, p.clients, s.duration),
				func(int) (*loadResult, float64, error) {
					quiet := b.waitQuiet(ctx, fr.svc.pid(), fr.fake.pid())
					w := startWindow(fr.svc.pid(), fr.fake.pid())
					r := runLoad(ctx, base, b.apiKey, n, p, s.warmup, s.duration)
					r.OtherCPU, r.Quiet = dur(w.others()), quiet
					r.OthersShare = share(time.Duration(r.OtherCPU), s.warmup+s.duration)
					b.logf("  %.0f req/s, p50 %v, p99 %v, %d errors, others %.0f%%", r.RPS, r.Latency.P50, r.Latency.P99,
						r.Errors, 100*r.OthersShare)
					return &r, r.OthersShare, nil
				})
			if err != nil {
				return err
			}
			rep.Loads = append(rep.Loads, *r)
		}
	}
	if heal {
		// Each run uses a session of its own, and each try further ones: a
		// session dropped twice within BACKOFF_RESET waits twice
		// BACKOFF_MIN the second time. Panics use the first half of the
		// sessions, drops the second.
		stride := s.healRuns
		if (b.retries+1)*s.healRuns > n/2 {
			b.logf("heal: %d runs (and up to %d retries) on %d sessions: a retry may reuse sessions, and a reused one may wait longer (backoff, restart budget)",
				s.healRuns, b.retries, n)
		}
		for i, kind := range []string{"panic", "drop"} {
			r, err := cleanest(ctx, b, fmt.Sprintf("heal: %d × %s, BACKOFF_MIN %s", s.healRuns, kind, backoff),
				func(try int) (*healResult, float64, error) {
					first := i*n/2 + try*stride
					quiet := b.waitQuiet(ctx, fr.svc.pid(), fr.fake.pid())
					w := startWindow(fr.svc.pid(), fr.fake.pid())
					r := runHeal(ctx, fr.svc.api, kind, backoff, fr.ids, first, s.healRuns, s.healConc, s.healPoll)
					r.OtherCPU, r.Quiet = dur(w.others()), quiet
					r.OthersShare = share(time.Duration(r.OtherCPU), time.Duration(r.Elapsed))
					b.logf("  p50 %v, p99 %v, %d failed, others %.0f%%", r.Service.P50, r.Service.P99, r.Failed, 100*r.OthersShare)
					return &r, r.OthersShare, nil
				})
			if err != nil {
				return err
			}
			rep.Heals = append(rep.Heals, *r)
		}
	}
	if !fr.svc.running() {
		return fmt.Errorf("%w during the measurements (%v)", errExited, fr.svc.waitErr)
	}
	return nil
}
