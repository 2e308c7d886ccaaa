// Command bench measures the whatsapp-sessions service as a whole process
// against the fake WhatsApp server (cmd/fakewa) running in a process of
// its own, so that memory, files and goroutines are the service's alone:
//
//   - restore: a fresh process restores N stored sessions (seeded with
//     fakeserver.SeedDevice) until all are connected; time to HTTP, time to
//     all connected, peak and settled RSS, RSS per session, open files,
//     goroutines per session, graceful shutdown time;
//   - load: session status (random ids) and all-sessions status under a
//     closed-loop load of concurrent clients, with 1,000 sessions connected;
//   - heal: time from an injected actor panic, and from a dropped socket,
//     to the session connected again, with the default BACKOFF_MIN and a
//     short one;
//   - profile: the same restore inside this process, through the service's
//     own packages, with CPU, heap and goroutine profiles.
//
// Run it from the repository root; it builds both binaries first:
//
//	go run ./bench                                  # restore, load, heal
//	go run ./bench -scenarios restore -sizes 1000   # one restore
//	go run ./bench -scenarios profile -profile-sessions 1000
//	go run ./bench -json > results.json
//
// Seeded sessions are kept in a template under -work and copied for each
// run, so seeding is paid once. Progress goes to stderr, the figures to
// stdout. BENCHMARKS.md has the figures and how to read them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// bench is the configuration every scenario shares.
type bench struct {
	root, work, template string
	bins                 binaries
	apiKey               string
	seedWorkers          int
	settle               time.Duration
	idle                 time.Duration
	restoreTimeout       time.Duration
	shutdownGrace        time.Duration
	keepRuns             bool
	restarts             int      // restore: further runs on each size's stores
	dbOnly               bool     // copy only whatsapp.db of each seeded session
	serviceEnv           []string // added to every service's environment
	quietWait            time.Duration
	quietBusy            float64
	retries              int     // more runs of a measurement others disturbed
	maxOthers            float64 // a run is clean when others took at most this share
	logf                 func(format string, args ...any)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run parses the flags, prepares the work directory, the file limit and
// the binaries, runs the scenarios and prints the report.
func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	b := o.bench
	if o.reseed {
		if err := os.RemoveAll(b.template); err != nil {
			return err
		}
	}
	for _, d := range []string{"logs", "bin"} {
		if err := os.MkdirAll(filepath.Join(b.work, d), 0o755); err != nil {
			return err
		}
	}
	limit, err := raiseNoFile(o.nofile)
	if err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if limit < o.nofile {
		b.logf("RLIMIT_NOFILE is %d: the hard limit does not allow %d", limit, o.nofile)
	}
	if b.bins.service == "" || b.bins.fakewa == "" {
		b.logf("building the service and cmd/fakewa from %s", b.root)
		built, err := build(ctx, b.root, filepath.Join(b.work, "bin"))
		if err != nil {
			return err
		}
		if b.bins.service == "" {
			b.bins.service = built.service
		}
		if b.bins.fakewa == "" {
			b.bins.fakewa = built.fakewa
		}
	}

	rep := &report{Machine: describeMachine(b.root, limit), Args: args, Work: b.work}
	if err := runScenarios(ctx, b, rep, o.scenarios); err != nil {
		// Show what was measured before the error too.
		rep.writeTables(os.Stderr)
		return err
	}
	if o.save != "" {
		f, err := os.Create(o.save)
		if err != nil {
			return err
		}
		if err := rep.writeJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if o.json {
		return rep.writeJSON(os.Stdout)
	}
	rep.writeTables(os.Stdout)
	return nil
}
