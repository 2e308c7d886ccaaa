package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// scenarios are which scenarios to run and their knobs, from the flags.
type scenarios struct {
	want             map[string]bool
	sizes            []int // restore
	loadSessions     int   // load and heal
	clients          []int
	fleetClients     int
	duration, warmup time.Duration
	healRuns         int
	healConc         int
	healPoll         time.Duration
	backoffs         []string
	profileSessions  int
}

// runScenarios runs the wanted scenarios in a fixed order, filling rep.
func runScenarios(ctx context.Context, b *bench, rep *report, s scenarios) error {
	if s.want["restore"] {
		b.logf("restore: baseline with no session")
		base, err := runRestore(ctx, b, 0, nil, 0)
		if err != nil {
			return err
		}
		rep.Baseline = &base
		for _, n := range s.sizes {
			for restart := range b.restarts + 1 {
				r, err := cleanest(ctx, b, fmt.Sprintf("restore: %d sessions (run %d)", n, restart), func(int) (*restoreResult, float64, error) {
					r, err := runRestore(ctx, b, n, &base, restart)
					return &r, r.OthersShare, err
				})
				if err != nil {
					return err
				}
				rep.Restores = append(rep.Restores, *r)
			}
		}
	}
	if s.want["load"] || s.want["heal"] {
		// The first service runs the load phases and the heal runs with
		// the default backoff; each further BACKOFF_MIN gets a service of
		// its own for the heal runs.
		for i, bo := range s.backoffs {
			bo = strings.TrimSpace(bo)
			if i > 0 && !s.want["heal"] {
				break
			}
			var env []string
			if bo != "default" && bo != "" {
				env = append(env, "BACKOFF_MIN="+bo)
			} else {
				bo = "1s (default)"
			}
			if err := runLive(ctx, b, rep, env, bo, s.want["load"] && i == 0, s.want["heal"], s); err != nil {
				return err
			}
		}
	}
	if s.want["profile"] {
		r, err := runProfile(ctx, b, s.profileSessions, filepath.Join(b.work, "profiles"))
		if err != nil {
			return err
		}
		rep.Profiles = append(rep.Profiles, r)
	}
	return ctx.Err()
}

// waitQuiet waits for a quiet machine, as the flags say; pids are our
// processes, whose CPU does not count.
func (b *bench) waitQuiet(ctx context.Context, pids ...int) bool {
	return waitQuiet(ctx, b.quietWait, b.quietBusy, b.logf, pids...)
}
