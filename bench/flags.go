package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// options are the parsed flags: the shared bench configuration, the
// scenarios, and what only run needs.
type options struct {
	bench     *bench
	scenarios scenarios
	nofile    uint64
	reseed    bool
	json      bool
	save      string
}

// parseFlags reads the command line. Every flag has a default that
// measures what BENCHMARKS.md reports.
func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	which := fs.String("scenarios", "restore,load,heal", "comma-separated: restore, load, heal, profile")
	sizes := fs.String("sizes", "100,1000,10000", "restore: numbers of stored sessions, one fresh process each")
	loadSessions := fs.Int("load-sessions", 1000, "load and heal: connected sessions in the service")
	clients := fs.String("clients", "64,256", "load: concurrent clients of single-session status, one phase each")
	fleetClients := fs.Int("fleet-clients", 16, "load: concurrent clients of all-sessions status (0: skip)")
	duration := fs.Duration("duration", 10*time.Second, "load: measured length of each phase")
	warmup := fs.Duration("warmup", time.Second, "load: unmeasured start of each phase")
	healRuns := fs.Int("heal-runs", 200, "heal: injections of each kind, each on its own session")
	healConc := fs.Int("heal-concurrency", 4, "heal: injections in flight at once")
	healPoll := fs.Duration("heal-poll", 5*time.Millisecond, "heal: status poll interval")
	backoffs := fs.String("heal-backoffs", "default,100ms", "heal: BACKOFF_MIN values, one service each (default: unset, 1s)")
	profileN := fs.Int("profile-sessions", 1000, "profile: sessions restored in process")
	settle := fs.Duration("settle", 5*time.Second, "restore: wait after all connected before measuring")
	idle := fs.Duration("idle", 0, "restore: also measure this long after all connected, once the stores' connections have idled out (30 s); 0: don't")
	restoreTimeout := fs.Duration("restore-timeout", 5*time.Minute, "restore: give up waiting for all connected after this")
	shutdownGrace := fs.Duration("shutdown-grace", time.Minute, "how long SIGTERM may take before SIGKILL")
	work := fs.String("work", filepath.Join(os.TempDir(), "wss-bench"), "seed template, run copies, logs, binaries, profiles")
	root := fs.String("root", ".", "the repository to build and measure")
	nofile := fs.Uint64("nofile", 65536, "RLIMIT_NOFILE wanted for the bench and its children (capped by the hard limit)")
	seedWorkers := fs.Int("seed-workers", 4*runtime.NumCPU(), "goroutines seeding sessions")
	reseed := fs.Bool("reseed", false, "throw the seeded template away and seed again")
	keep := fs.Bool("keep", false, "keep each run's sessions directory")
	restarts := fs.Int("restarts", 0, "restore: after each size's fresh run, restart the service this many more times on the same stores")
	storeFiles := fs.String("store-files", "all", "restore: copy each seeded session's files: all (the store, its WAL files, its clean marker, as the service left them) or db (whatsapp.db alone: a store that never had WAL files or a clean close)")
	serviceBin := fs.String("service-bin", "", "use this service binary instead of building one")
	fakeBin := fs.String("fakewa-bin", "", "use this fakewa binary instead of building one")
	serviceEnv := fs.String("service-env", "", "comma-separated KEY=VALUE added to every service's environment (CONNECT_RATE=2000,...)")
	quietWait := fs.Duration("quiet-wait", 3*time.Minute, "before each measurement, wait up to this for a quiet machine (0: look once, don't wait)")
	quietBusy := fs.Float64("quiet-busy", 0.25, "a quiet machine has fewer CPUs than this busy with other processes")
	retries := fs.Int("retries", 2, "run a measurement up to this many more times while other processes took more than -max-others of the machine during it; the cleanest run is kept")
	maxOthers := fs.Float64("max-others", 0.05, "the share of the machine's CPU that others may take during a clean run")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of tables")
	save := fs.String("save", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}

	if *storeFiles != "all" && *storeFiles != "db" {
		return options{}, fmt.Errorf("-store-files: want all or db, got %q", *storeFiles)
	}
	if *restarts < 0 {
		return options{}, fmt.Errorf("-restarts: want 0 or more, got %d", *restarts)
	}
	var o options
	o.scenarios = scenarios{
		want: map[string]bool{}, loadSessions: *loadSessions, fleetClients: *fleetClients,
		duration: *duration, warmup: *warmup, healRuns: *healRuns, healConc: *healConc, healPoll: *healPoll,
		backoffs: strings.Split(*backoffs, ","), profileSessions: *profileN,
	}
	for _, s := range strings.Split(*which, ",") {
		switch s = strings.TrimSpace(s); s {
		case "restore", "load", "heal", "profile":
			o.scenarios.want[s] = true
		case "":
		default:
			return o, fmt.Errorf("unknown scenario %q", s)
		}
	}
	var err error
	if o.scenarios.sizes, err = ints(*sizes); err != nil {
		return o, fmt.Errorf("-sizes: %w", err)
	}
	if o.scenarios.clients, err = ints(*clients); err != nil {
		return o, fmt.Errorf("-clients: %w", err)
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return o, err
	}
	b := &bench{root: absRoot, work: *work, template: filepath.Join(*work, "seed"), seedWorkers: *seedWorkers,
		bins:      binaries{service: *serviceBin, fakewa: *fakeBin},
		quietWait: *quietWait, quietBusy: *quietBusy, retries: *retries, maxOthers: *maxOthers,
		settle: *settle, idle: *idle, restoreTimeout: *restoreTimeout, shutdownGrace: *shutdownGrace, keepRuns: *keep,
		restarts: *restarts, dbOnly: *storeFiles == "db",
		logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
		}}
	for _, kv := range strings.Split(*serviceEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			if !strings.Contains(kv, "=") {
				return o, fmt.Errorf("-service-env: %q is not KEY=VALUE", kv)
			}
			b.serviceEnv = append(b.serviceEnv, kv)
		}
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	b.apiKey = hex.EncodeToString(key)
	o.bench, o.nofile, o.reseed, o.json, o.save = b, *nofile, *reseed, *asJSON, *save
	return o, nil
}

// ints parses a comma-separated list of non-negative integers.
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
