// Command bench measures the whatsapp-sessions service as a whole process
// against cmd/fakewa, the fake WhatsApp server, in a process of its own
// (TLS between them), so that memory, files and CPU are the service's
// alone. Scenarios: restore (a fresh process restores N stored sessions
// until all are connected; -restarts more runs on the same stores),
// load (status routes under closed-loop load), heal (injected panics and
// dropped sockets to connected again), profile (the same restore in
// this process, built by app.New as main.go builds it, with pprof), and
// messaging (fake contacts send to connected sessions at a fixed rate and
// a webhook receiver in the bench times each event; then the sessions
// send through the API), stream (a restore while clients read the live
// event stream, and the same restore without them), and cluster (N SQLite
// sessions migrated into one Postgres, three nodes restore them, one is
// killed with -9; see cluster.go).
//
// Memory, goroutines and files come from the service's /metrics; CPU,
// peak RSS, peak open files and others' CPU from /proc. Each figure
// carries the share of the CPUs other processes took meanwhile.
//
//	go run ./bench -scenarios restore -sizes 1000 -restarts 2
//	go run ./bench -scenarios profile -profile-sessions 1000
//	go run ./bench -scenarios messaging -work /tmp/wss-bench-msg
//	go run ./bench -scenarios stream -stream-sessions 1000 -stream-clients 0,100
//	go run ./bench -scenarios cluster -cluster-sizes 1000 -cluster-runs 3
//	go run ./bench -h   # every flag; BENCHMARKS.md has the figures
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bench is the configuration every scenario shares, from the flags.
type bench struct {
	work, template, serviceBin, fakeBin, apiKey                     string
	restarts, loadSessions, fleetClients, healRuns, profileSessions int
	msgSessions, msgRate, sendRate                                  int
	streamSessions, streamRepeat, clusterRuns                       int
	streamClients                                                   []int
	settle, duration, msgDuration, sendDuration, msgRest            time.Duration
	dbOnly                                                          bool // -store-files db: whatsapp.db alone
	sendKeys                                                        bool // -send-idempotency: each send with an Idempotency-Key
	msgPrepare                                                      bool // -msg-prepare: contacts open their Signal sessions before the receive phase
	msgWarm                                                         bool // -msg-warm: each contact writes once before the receive phase
	serviceEnv, fakeEnv, backoffs                                   []string
	scenarios                                                       map[string]bool
	sizes, clients, clusterSizes                                    []int
}

// Fixed bounds: of a restore (to all connected), of one heal run.
const restoreTimeout, healTimeout = 5 * time.Minute, time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// logf writes a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// run parses the flags, prepares the work directory, the file limit and
// the binaries, runs the scenarios and prints the report.
func run(ctx context.Context, args []string) error {
	b := &bench{scenarios: map[string]bool{}}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	which := fs.String("scenarios", "restore,load,heal", "comma-separated: restore, load, heal, profile, messaging, stream, cluster")
	sizes := fs.String("sizes", "100,1000,10000", "restore: numbers of stored sessions, one fresh process each")
	fs.IntVar(&b.restarts, "restarts", 0, "restore: after each size's fresh run, restart the service this many more times on the same stores")
	storeFiles := fs.String("store-files", "all", "restore: copy each seeded session's files: all (as the service left them) or db (whatsapp.db alone: no WAL files, no clean marker)")
	fs.DurationVar(&b.settle, "settle", 5*time.Second, "restore and profile: wait after all connected before measuring")
	fs.IntVar(&b.loadSessions, "load-sessions", 1000, "load and heal: connected sessions in the service")
	clients := fs.String("clients", "64,256", "load: concurrent clients of single-session status, one phase each")
	fs.IntVar(&b.fleetClients, "fleet-clients", 16, "load: concurrent clients of all-sessions status (0: skip)")
	fs.DurationVar(&b.duration, "duration", 10*time.Second, "load: measured length of each phase")
	fs.IntVar(&b.healRuns, "heal-runs", 200, "heal: injections of each kind, each on its own session")
	backoffs := fs.String("heal-backoffs", "default,100ms", "heal: BACKOFF_MIN values, one service each (default: unset, 1s)")
	fs.IntVar(&b.profileSessions, "profile-sessions", 1000, "profile: sessions restored in process")
	fs.IntVar(&b.msgSessions, "msg-sessions", 1000, "messaging: connected sessions")
	fs.IntVar(&b.msgRate, "msg-rate", 1000, "messaging: messages a second the contacts send, in total")
	fs.DurationVar(&b.msgDuration, "msg-duration", time.Minute, "messaging: how long the contacts send")
	fs.IntVar(&b.sendRate, "send-rate", 500, "messaging: messages a second the sessions send through the API, in total")
	fs.DurationVar(&b.sendDuration, "send-duration", time.Minute, "messaging: how long the sessions send")
	fs.BoolVar(&b.msgPrepare, "msg-prepare", false, "messaging: the contacts open their Signal sessions with the sessions' devices before the receive phase (the X3DH a contact's phone does, which otherwise the fake server does on the shared cores at each contact's first message); their first messages are prekey messages either way")
	fs.BoolVar(&b.sendKeys, "send-idempotency", false, "messaging: every send carries an Idempotency-Key of its own (so the idempotency store records each)")
	fs.BoolVar(&b.msgWarm, "msg-warm", false, "messaging: before the receive phase, each contact sends one message (outside the phase's figures) and the bench waits until the receiver got them all and the stores rested again, so that the phase's contacts are known ones, not 2,000 first contacts in its first 2 s")
	fs.DurationVar(&b.msgRest, "msg-rest", 30*time.Second, "messaging: after both phases, when to read RSS again, once the stores closed and the service gave memory back (skipped unless beyond -settle)")
	fs.IntVar(&b.streamSessions, "stream-sessions", 1000, "stream: stored sessions restored")
	streamClients := fs.String("stream-clients", "0,100", "stream: numbers of event stream clients, one fresh service each")
	fs.IntVar(&b.streamRepeat, "stream-repeat", 1, "stream: run the -stream-clients list this many times")
	clusterSizes := fs.String("cluster-sizes", "1000", "cluster: numbers of sessions migrated into Postgres and restored by 3 nodes, fresh each")
	fs.IntVar(&b.clusterRuns, "cluster-runs", 1, "cluster: runs of each size")
	fs.StringVar(&b.work, "work", filepath.Join(os.TempDir(), "wss-bench"), "seed template, run copies, logs, binaries, profiles")
	nofile := fs.Uint64("nofile", 65536, "RLIMIT_NOFILE wanted for the bench and its children (capped by the hard limit)")
	fs.StringVar(&b.serviceBin, "service-bin", "", "use this service binary instead of building one")
	fs.StringVar(&b.fakeBin, "fakewa-bin", "", "use this cmd/fakewa binary instead of building one")
	serviceEnv := fs.String("service-env", "", "comma-separated KEY=VALUE added to every service's environment (CONNECT_RATE=2000,...)")
	fakeEnv := fs.String("fakewa-env", "", "comma-separated KEY=VALUE added to every fake server's environment (PPROF_ADDR=127.0.0.1:6062 with a -tags pprof build)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *storeFiles != "all" && *storeFiles != "db" {
		return fmt.Errorf("-store-files: want all or db, got %q", *storeFiles)
	}
	if b.msgRate <= 0 || b.sendRate <= 0 || b.msgSessions <= 0 {
		return fmt.Errorf("-msg-sessions, -msg-rate and -send-rate must be positive")
	}
	if b.restarts < 0 {
		return fmt.Errorf("-restarts: want 0 or more, got %d", b.restarts)
	}
	b.apiKey, b.template, b.dbOnly = rand.Text(), filepath.Join(b.work, "seed"), *storeFiles == "db"
	b.backoffs, b.serviceEnv, b.fakeEnv = list(*backoffs), list(*serviceEnv), list(*fakeEnv)
	for _, s := range list(*which) {
		if s != "restore" && s != "load" && s != "heal" && s != "profile" && s != "messaging" && s != "stream" && s != "cluster" {
			return fmt.Errorf("unknown scenario %q", s)
		}
		b.scenarios[s] = true
	}
	for flag, kvs := range map[string][]string{"-service-env": b.serviceEnv, "-fakewa-env": b.fakeEnv} {
		for _, kv := range kvs {
			if !strings.Contains(kv, "=") {
				return fmt.Errorf("%s: %q is not KEY=VALUE", flag, kv)
			}
		}
	}
	var err error
	if b.sizes, err = ints(*sizes); err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	if b.clients, err = ints(*clients); err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if b.streamClients, err = ints(*streamClients); err != nil {
		return fmt.Errorf("-stream-clients: %w", err)
	}
	if b.clusterSizes, err = ints(*clusterSizes); err != nil {
		return fmt.Errorf("-cluster-sizes: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(b.work, "logs"), 0o755); err != nil {
		return err
	}
	limit, err := raiseNoFile(*nofile)
	if err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if err := b.build(ctx); err != nil {
		return err
	}

	rep := &report{machine: describeMachine(limit, b.work), work: b.work, settle: b.settle}
	if err := b.runScenarios(ctx, rep); err != nil {
		rep.writeTables(os.Stderr) // what was measured before the error
		return err
	}
	rep.writeTables(os.Stdout)
	return nil
}

// runScenarios runs the wanted scenarios in a fixed order, filling rep.
func (b *bench) runScenarios(ctx context.Context, rep *report) error {
	if b.scenarios["restore"] {
		var base *restoreResult
		for _, n := range append([]int{0}, b.sizes...) { // 0: the baseline
			for restart := range min(n, 1)*b.restarts + 1 {
				logf("restore: %d sessions (run %d)", n, restart)
				r, err := b.runRestore(ctx, n, base, restart)
				if err != nil {
					return err
				}
				rep.restores = append(rep.restores, r)
				base = cmp.Or(base, &r)
			}
		}
	}
	if b.scenarios["load"] || b.scenarios["heal"] {
		// The first service runs the load phases and the heal runs with
		// the first backoff; each further one gets a service of its own.
		for i, bo := range b.backoffs {
			if i > 0 && !b.scenarios["heal"] {
				break
			}
			env := []string{"BACKOFF_MIN=" + bo}
			if bo == "default" {
				env, bo = nil, "1s (default)"
			}
			if err := b.runLive(ctx, rep, env, bo, b.scenarios["load"] && i == 0); err != nil {
				return err
			}
		}
	}
	if b.scenarios["messaging"] {
		r, err := b.runMessaging(ctx, b.msgSessions)
		rep.messaging = append(rep.messaging, r)
		if err != nil {
			return err
		}
	}
	if b.scenarios["stream"] {
		for range max(b.streamRepeat, 1) {
			for _, k := range b.streamClients {
				logf("stream: %d sessions, %d clients", b.streamSessions, k)
				r, err := b.runStream(ctx, b.streamSessions, k)
				rep.streams = append(rep.streams, r)
				if err != nil {
					return err
				}
			}
		}
	}
	if b.scenarios["cluster"] {
		if err := b.runClusterScenario(ctx, rep); err != nil {
			return err
		}
	}
	if b.scenarios["profile"] {
		r, err := b.runProfile(ctx, b.profileSessions)
		if err != nil {
			return err
		}
		rep.profiles = append(rep.profiles, r)
	}
	return ctx.Err()
}

// list splits a comma-separated list, dropping blanks.
func list(s string) (out []string) {
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ints parses a comma-separated list of non-negative integers.
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range list(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// build compiles the service and cmd/fakewa from the tree into the work
// directory, unless given, so that every figure is for a plain `go build`.
func (b *bench) build(ctx context.Context) error {
	logf("building the service and cmd/fakewa")
	for _, t := range []struct {
		bin       *string
		name, pkg string
	}{{&b.serviceBin, "whatsapp-sessions", "."}, {&b.fakeBin, "fakewa", "./cmd/fakewa"}} {
		if *t.bin != "" {
			continue
		}
		*t.bin = filepath.Join(b.work, "bin", t.name)
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", *t.bin, t.pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", t.pkg, err, out)
		}
	}
	return nil
}

// raiseNoFile lifts RLIMIT_NOFILE to want for this process and so for its
// children, or to the hard limit if it may not go higher; it returns the
// limit in force.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= want {
		return lim.Cur, err
	}
	if lim.Max < want && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) != nil {
		logf("RLIMIT_NOFILE: the hard limit %d does not allow %d", lim.Max, want)
		want = lim.Max
	}
	return want, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)})
}

// describeMachine says where the figures were taken: the machine, the
// toolchain, the file limit the children got, the file system of the work
// directory (describeFS) and the tree's commit.
func describeMachine(nofile uint64, work string) string {
	field := func(path, key string) string { // the value of a "key: value" line
		b, _ := os.ReadFile(path)
		_, v, _ := strings.Cut("\n"+string(b), "\n"+key)
		return strings.TrimLeft(strings.SplitN(v, "\n", 2)[0], " \t:")
	}
	m := fmt.Sprintf("%d CPUs, %s, %s RAM, Linux %s, %s, RLIMIT_NOFILE %d, -work on %s, commit %s", runtime.NumCPU(),
		field("/proc/cpuinfo", "model name"), field("/proc/meminfo", "MemTotal"), command("uname", "-r"),
		command("go", "version"), nofile, describeFS(work), command("git", "rev-parse", "--short", "HEAD"))
	if command("git", "status", "--porcelain", "--untracked-files=no") != "" {
		m += " (with uncommitted changes)"
	}
	return m
}

// command runs name and returns its trimmed output ("" on error).
func command(name string, args ...string) string {
	out, _ := exec.Command(name, args...).Output()
	return strings.TrimSpace(string(out))
}
