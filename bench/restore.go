package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
	"golang.org/x/sync/errgroup"
)

// restoreResult is what one service process did with N stored sessions:
// how fast they came back, and what it costs once they have.
type restoreResult struct {
	sessions, restart int  // restart: 0 for fresh copies of the seeded stores, k for the k-th restart on them
	dbOnly, ok        bool // dbOnly: the copies held whatsapp.db alone
	failure, logFile  string
	// From process start (allConnected: to the restore's end as the service
	// stamps it); restoreTook: from the restore's start to its end.
	httpReady, allConnected, restoreTook dur
	serviceCPU, serviceSysCPU, fakeCPU   dur // user + kernel when the restore finished; serviceSysCPU: kernel part
	fakeTLS, fakeTLSResumed              int // TLS handshakes the fake server completed by then, resumed ones
	taken                                    // from the service's start to the end of the restore
	connected                            int
	counts                               map[sessions.State]int
	peakFDs                              int // sampled until the service stops
	shutdown                             dur
	// Resources -settle after all connected: peak RSS (VmHWM) from /proc,
	// the rest from /metrics; per session: minus the 0-session baseline's.
	peakRSS                                             int64
	measured                                            bool
	rss, goHeapInuse, goStackInuse, goSys, fds, fdLimit float64
	goroutines                                          float64
	rssPerSession, goroutinesPerSes                     float64
}

// fleetRun is a fake server and a service that restored N sessions.
type fleetRun struct {
	res         restoreResult
	fake, svc   *proc
	stopFDs     func() int // the service's peak open files
	connectedAt time.Time  // when the restore ended (all connected, or given up)
	runDir      string     // the copied SESSIONS_DIR
	keepDir     bool       // a restart follows on runDir
}

// startFleet copies n seeded sessions into a fresh SESSIONS_DIR (a restart
// reuses the previous run's), starts a fake server and the service (with
// env, and hidden, which the names of its files do not show), and waits
// for its HTTP server and, for n > 0, the restore's end. A restore that
// does not finish is a result (ok false), not an error.
func (b *bench) startFleet(ctx context.Context, n int, env, hidden []string, restart int) (*fleetRun, error) {
	env = append(append([]string(nil), b.serviceEnv...), env...)
	tag := strings.NewReplacer("=", "_", "/", "_").Replace(strings.Join(append([]string{fmt.Sprintf("n%d", n)}, env...), "-"))
	env = append(env, hidden...)
	runDir := filepath.Join(b.work, "run", tag)
	if restart > 0 {
		tag += fmt.Sprintf("-restart%d", restart)
	} else if err := b.copySessions(ctx, runDir, n); err != nil {
		return nil, err
	}
	// Write the copies out now, or the kernel's writeback would run during
	// the restore.
	syscall.Sync()
	fake, err := startFake(ctx, b.fakeBin, b.fakeEnv, filepath.Join(b.work, "logs", "fakewa-"+tag+".log"))
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(b.work, "logs", "service-"+tag+".log")
	svc, err := startService(b.serviceBin, runDir, logPath, b.apiKey, fake, env)
	if err != nil {
		fake.stop(5 * time.Second)
		return nil, err
	}
	window := startWindow(fake.pid(), svc.pid())
	fr := &fleetRun{fake: fake, svc: svc, stopFDs: peakFDs(svc.pid()), runDir: runDir,
		res: restoreResult{sessions: n, restart: restart, dbOnly: b.dbOnly && restart == 0, logFile: logPath}}
	defer func() { fr.connectedAt = time.Now() }()
	if err := svc.waitHTTP(ctx, "http://"+svc.addr+"/healthz", 30*time.Second); err != nil {
		fr.res.failure = err.Error()
		return fr, nil
	}
	fr.res.httpReady = dur(time.Since(svc.started))
	// Without the automatic restore the caller asks for it and waits.
	if n > 0 && !slices.Contains(env, "AUTO_RESTORE_SESSIONS=false") {
		fr.waitRestore(ctx)
	}
	fr.res.taken = window()
	fr.res.ok = fr.res.failure == ""
	return fr, nil
}

// waitRestore waits until the service logs that its restore finished,
// then reads the restore's figures and checks that all are connected. It
// watches the log rather than polling the API, which would cost the
// service the CPU the bench measures (a /metrics scrape of 1,000 sessions
// takes tens of milliseconds).
func (fr *fleetRun) waitRestore(ctx context.Context) {
	n, svc := fr.res.sessions, fr.svc
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	text, seen := []byte(`"msg":"restore finished"`), []byte(nil)
	logFile, err := os.Open(svc.logPath)
	if err != nil {
		fr.res.failure = err.Error()
		return
	}
	defer logFile.Close()
	for {
		more, _ := io.ReadAll(logFile) // what was added since the last look
		if seen = append(seen[max(0, len(seen)-len(text)):], more...); bytes.Contains(seen, text) {
			break
		}
		select {
		case <-svc.exited:
			fr.res.failure = fmt.Sprintf("the service exited during the restore (%v)", svc.waitErr)
			return
		case <-ctx.Done():
			fr.res.failure = ctx.Err().Error()
			return
		case <-tick.C:
		}
		if time.Since(svc.started) > restoreTimeout {
			fr.res.failure = fmt.Sprintf("the restore did not finish within %v", restoreTimeout)
			break
		}
	}
	user, sys := cpuTimes(svc.pid())
	fu, fs := cpuTimes(fr.fake.pid())
	fr.res.serviceCPU, fr.res.serviceSysCPU, fr.res.fakeCPU = dur(user+sys), dur(sys), dur(fu+fs)
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if st, err := fakeserver.NewRemote("http://"+fr.fake.control, nil).Stats(mctx); err == nil {
		fr.res.fakeTLS, fr.res.fakeTLSResumed = st.TLSHandshakes, st.TLSResumed
	}
	f, err := svc.api.Fleet(mctx)
	if err != nil {
		fr.res.failure = strings.TrimPrefix(fr.res.failure+"; fleet status: "+err.Error(), "; ")
		return
	}
	if r := f.Restore; r.Started != nil && r.Finished != nil {
		fr.res.allConnected, fr.res.restoreTook = dur(r.Finished.Sub(svc.started)), dur(r.Finished.Sub(*r.Started))
	}
	fr.res.counts, fr.res.connected = f.Counts, f.Counts[sessions.StateConnected]
	if fr.res.connected != n && fr.res.failure == "" {
		fr.res.failure = fmt.Sprintf("%d of %d connected after the restore finished", fr.res.connected, n)
	}
}

// measure waits until -settle has passed since all connected, then takes
// the resources into res (unless the service is gone). baseline may be nil.
func (fr *fleetRun) measure(ctx context.Context, after time.Duration, baseline *restoreResult) {
	select {
	case <-time.After(time.Until(fr.connectedAt.Add(after))):
	case <-ctx.Done():
		return
	}
	p, err := procfs.NewProc(fr.svc.pid())
	st, err2 := p.NewStatus()
	if err != nil || err2 != nil {
		return // gone
	}
	r := &fr.res
	r.peakRSS, r.measured = int64(st.VmHWM), true
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := fr.svc.api.Metrics(mctx)
	if err != nil {
		logf("  metrics: %v", err)
		return
	}
	for name, v := range map[string]*float64{"process_resident_memory_bytes": &r.rss, "go_goroutines": &r.goroutines,
		"go_memstats_heap_inuse_bytes": &r.goHeapInuse, "go_memstats_stack_inuse_bytes": &r.goStackInuse,
		"go_memstats_sys_bytes": &r.goSys, "process_open_fds": &r.fds, "process_max_fds": &r.fdLimit} {
		*v, _ = client.Sample(m, name)
	}
	if n := float64(r.sessions); n > 0 && baseline != nil && baseline.measured {
		r.rssPerSession, r.goroutinesPerSes = (r.rss-baseline.rss)/n, (r.goroutines-baseline.goroutines)/n
	}
}

// stop stops the service (measuring its graceful shutdown), then the fake
// server, and removes the copied sessions unless a restart follows.
func (fr *fleetRun) stop() {
	fr.res.peakFDs = fr.stopFDs()
	fr.res.shutdown = dur(fr.svc.stop(time.Minute)) // then SIGKILL
	fr.fake.stop(10 * time.Second)
	if !fr.keepDir {
		_ = os.RemoveAll(fr.runDir)
	}
}

// runRestore is the restore scenario for one size: a process restores n
// stored sessions, is measured once settled, and is stopped.
func (b *bench) runRestore(ctx context.Context, n int, baseline *restoreResult, restart int) (restoreResult, error) {
	fr, err := b.startFleet(ctx, n, nil, nil, restart)
	if err != nil {
		return restoreResult{}, err
	}
	fr.keepDir = n > 0 && restart < b.restarts
	fr.measure(ctx, b.settle, baseline)
	fr.stop()
	if fr.res.ok {
		logf("restore n=%d: all connected %v after start (took %v)", n, fr.res.allConnected, fr.res.restoreTook)
	} else {
		logf("restore n=%d FAILED: %s\n%s", n, fr.res.failure, fr.svc.tail(12))
	}
	return fr.res, nil
}

// countFile records how many sessions the template (a SESSIONS_DIR) holds
// and the fingerprint of the code that made them (templateFingerprint);
// each run copies the first N, so all restore the same untouched stores. A
// template made by other seeding code (a changed LID or key derivation) is
// seeded again from scratch: its stores would make every login rewrite the
// device; so is one whose clean markers another build wrote (its stores
// would run the schema check that this build's own markers skip).
const countFile = ".bench-seeded"

// templateFingerprint digests the fake server's seed fingerprint and the
// clean marker this build writes.
func templateFingerprint() string {
	sum := sha256.Sum256([]byte(fakeserver.SeedFingerprint() + "\n" + store.CleanMarkerSchema()))
	return hex.EncodeToString(sum[:8])
}

// seededCount is how many sessions the template holds, 0 when it was made
// with another fingerprint (its sessions are then removed).
func (b *bench) seededCount() (int, error) {
	data, _ := os.ReadFile(filepath.Join(b.template, countFile))
	count, fingerprint, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	have, _ := strconv.Atoi(count)
	if have == 0 || fingerprint == templateFingerprint() {
		return have, nil
	}
	logf("the template in %s was seeded by other code (fingerprint %q, now %q): seeding it again", b.template, fingerprint, templateFingerprint())
	entries, err := os.ReadDir(b.template)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "session-") || e.Name() == countFile {
			if err := os.RemoveAll(filepath.Join(b.template, e.Name())); err != nil {
				return 0, err
			}
		}
	}
	return 0, nil
}

// sessionID names the i-th seeded session.
func sessionID(i int) string { return fmt.Sprintf("s%05d", i) }

// sessionUser is the WhatsApp account (phone number) of session i.
func sessionUser(i int) string { return fmt.Sprintf("1555%07d", i) }

// copyPreservingTime copies the file src to dst with src's modification
// time, as cp -a does: a store's clean marker vouches for its database
// file's size and time, so a copy that changed the time would be checked
// at Open as a store changed behind the service's back.
func copyPreservingTime(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// copySessions makes dst a fresh SESSIONS_DIR holding real copies of the
// template's first n sessions (whatsapp.db alone with -store-files db),
// first seeding the template's missing ones (closed cleanly, as the
// service leaves them).
func (b *bench) copySessions(ctx context.Context, dst string, n int) error {
	have, err := b.seededCount()
	if err != nil {
		return err
	}
	if have < n {
		began := time.Now()
		logf("seeding sessions %d..%d into %s", have, n-1, b.template)
		var seeds []fakeserver.Seed
		for i := have; i < n; i++ {
			seeds = append(seeds, fakeserver.Seed{ID: sessionID(i), User: sessionUser(i)})
		}
		opts := fakeserver.SeedOptions{Workers: 4 * runtime.NumCPU(), CleanClose: true}
		if err := fakeserver.SeedStores(ctx, b.template, seeds, opts); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		logf("seeded %d sessions in %v", n-have, time.Since(began).Round(time.Millisecond))
		if err := os.WriteFile(filepath.Join(b.template, countFile), []byte(strconv.Itoa(n)+" "+templateFingerprint()+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	var g errgroup.Group
	g.SetLimit(max(2, runtime.NumCPU()))
	for i := range n {
		name := "session-" + sessionID(i)
		g.Go(func() error {
			if err := os.MkdirAll(filepath.Join(dst, name), 0o700); err != nil {
				return err
			}
			entries, err := os.ReadDir(filepath.Join(b.template, name))
			for _, e := range entries {
				if err == nil && e.Type().IsRegular() && (!b.dbOnly || e.Name() == "whatsapp.db") {
					err = copyPreservingTime(filepath.Join(b.template, name, e.Name()), filepath.Join(dst, name, e.Name()))
				}
			}
			return err
		})
	}
	return g.Wait()
}
