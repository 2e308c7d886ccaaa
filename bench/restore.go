package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
	"golang.org/x/sync/errgroup"
)

// restoreResult is what one service process did with N stored sessions:
// how fast they came back, and what it costs once they have.
type restoreResult struct {
	Sessions int `json:"sessions"`
	// Restart is 0 for a fresh copy of the seeded stores, k for the k-th
	// restart of the service on the stores the previous run left.
	Restart int    `json:"restart"`
	DBOnly  bool   `json:"dbOnly,omitempty"` // the copies held whatsapp.db alone
	Env     string `json:"env,omitempty"`    // extra service environment
	OK      bool   `json:"ok"`
	Failure string `json:"failure,omitempty"`

	// HTTPReady is process start to the first 200 from /healthz.
	HTTPReady dur `json:"httpReadyMs"`
	// AllConnected is process start to the restore's end as the service
	// stamps it (every restored session settled: "restore finished" in its
	// log); RestoreTook is from the restore's start to that end.
	AllConnected dur `json:"allConnectedMs"`
	RestoreTook  dur `json:"restoreTookMs"`
	// ServiceCPU (user and kernel, from /proc) and FakeCPU are the CPU time
	// each process had used when the restore finished.
	ServiceCPU    dur `json:"serviceCpuMs"`
	ServiceSysCPU dur `json:"serviceSysCpuMs"` // the kernel's part of ServiceCPU
	FakeCPU       dur `json:"fakeCpuMs"`
	// FakeTLS and FakeTLSResumed are the TLS handshakes the fake server
	// completed by the end of the restore, and how many resumed a session.
	FakeTLS        int                    `json:"fakeTlsHandshakes"`
	FakeTLSResumed int                    `json:"fakeTlsResumed"`
	taken                                 // from the service's start to the end of the restore
	Connected      int                    `json:"connected"`
	Counts         map[sessions.State]int `json:"counts,omitempty"`

	PeakRSS int64 `json:"peakRssBytes"`  // VmHWM at the last snapshot
	PeakFDs int   `json:"peakOpenFiles"` // sampled until the service stops
	FDLimit int   `json:"openFilesLimit"`
	// Settled is taken -settle after all connected; Idle, when asked for,
	// later, once the stores' idle connections have closed.
	Settled *snapshot `json:"settled,omitempty"`
	Idle    *snapshot `json:"idle,omitempty"`

	Shutdown      dur    `json:"shutdownMs"`
	ShutdownClean bool   `json:"shutdownClean"`
	LogFile       string `json:"logFile"`
}

// snapshot is the service's resources at one moment, from its /metrics
// but for the split of the resident set and its peak; the per-session
// figures subtract the same binary's with no session (the baseline).
type snapshot struct {
	After            dur     `json:"afterMs"`            // after all connected
	RSS              float64 `json:"rssBytes"`           // process_resident_memory_bytes
	HWM              int64   `json:"vmHWM"`              // peak RSS since start
	Anon             int64   `json:"rssAnon"`            // /proc/PID/status
	File             int64   `json:"rssFile"`            // /proc/PID/status
	RSSPerSession    float64 `json:"rssPerSessionBytes"` // (RSS - baseline RSS) / N
	RSSOverN         float64 `json:"rssOverSessionsBytes"`
	GoHeapInuse      float64 `json:"goHeapInuseBytes"`
	GoStackInuse     float64 `json:"goStackInuseBytes"`
	GoSys            float64 `json:"goSysBytes"`
	FDs              float64 `json:"openFiles"`
	Threads          float64 `json:"threads"`
	Goroutines       float64 `json:"goroutines"`
	GoroutinesPerSes float64 `json:"goroutinesPerSession"` // (goroutines - baseline) / N
}

// fleetRun is a fake server and a service restoring N sessions, kept
// running for the scenarios that need connected sessions.
type fleetRun struct {
	res         restoreResult
	fake, svc   *proc
	stopFDs     func() int // the service's peak open files
	connectedAt time.Time  // when the restore ended (all connected, or given up)
	runDir      string     // the copied SESSIONS_DIR
	keepDir     bool       // a restart follows on runDir
}

// startFleet copies n seeded sessions into a fresh SESSIONS_DIR (for
// restart 0; a restart reuses the one the previous run left), starts a
// fake server and then the service (with env), and waits until the HTTP
// server answers and, for n > 0, the restore has finished or timed out.
// A restore that does not finish is a result (OK false), not an error.
func (b *bench) startFleet(ctx context.Context, n int, env []string, restart int) (*fleetRun, error) {
	env = append(append([]string(nil), b.serviceEnv...), env...)
	tag := fmt.Sprintf("n%d", n)
	if len(env) > 0 {
		tag += "-" + strings.NewReplacer("=", "_", "/", "_", ",", "_").Replace(strings.Join(env, "-"))
	}
	runDir := filepath.Join(b.work, "run", tag)
	if restart > 0 {
		tag += fmt.Sprintf("-restart%d", restart)
	} else if err := b.copySessions(ctx, runDir, n); err != nil {
		return nil, err
	}
	// Write the copies out now, or the kernel's writeback would run during
	// the restore.
	syscall.Sync()
	fake, err := startFake(ctx, b.fakeBin, filepath.Join(b.work, "logs", "fakewa-"+tag+".log"))
	if err != nil {
		return nil, err
	}
	window := startWindow(fake.pid())
	logPath := filepath.Join(b.work, "logs", "service-"+tag+".log")
	svc, err := startService(b.serviceBin, runDir, logPath, b.apiKey, fake, env)
	if err != nil {
		fake.stop(5 * time.Second)
		return nil, err
	}
	window.pids = append(window.pids, svc.pid()) // from its start
	fr := &fleetRun{fake: fake, svc: svc, stopFDs: peakFDs(svc.pid()), runDir: runDir,
		res: restoreResult{Sessions: n, Restart: restart, DBOnly: b.dbOnly && restart == 0,
			Env: strings.Join(env, " "), LogFile: logPath}}
	defer func() { fr.connectedAt = time.Now() }()
	if err := svc.waitHTTP(ctx, "http://"+svc.addr+"/healthz", 30*time.Second); err != nil {
		fr.res.Failure = err.Error()
		return fr, nil
	}
	fr.res.HTTPReady = dur(time.Since(svc.started))
	if n > 0 {
		fr.waitRestore(ctx)
	}
	fr.res.taken = window.taken()
	fr.res.OK = fr.res.Failure == ""
	return fr, nil
}

// waitRestore waits until the service logs that its restore finished
// (every session settled), then reads the figures of the restore and
// checks that every session is connected. It watches the service's log
// file from outside rather than polling its API, which would cost the
// service the CPU the bench measures (a /metrics scrape of 1,000
// sessions takes tens of milliseconds).
func (fr *fleetRun) waitRestore(ctx context.Context) {
	n, svc := fr.res.Sessions, fr.svc
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	finished := logWatch{path: svc.logPath, text: []byte(`"msg":"restore finished"`)}
	for !finished.seen() {
		select {
		case <-svc.exited:
			fr.res.Failure = fmt.Sprintf("the service exited during the restore (%v)", svc.waitErr)
			return
		case <-ctx.Done():
			fr.res.Failure = ctx.Err().Error()
			return
		case <-tick.C:
		}
		if time.Since(svc.started) > restoreTimeout {
			fr.res.Failure = fmt.Sprintf("the restore did not finish within %v", restoreTimeout)
			break
		}
	}
	user, sys := cpuTimes(svc.pid())
	fr.res.ServiceCPU = dur(user + sys)
	fu, fs := cpuTimes(fr.fake.pid())
	fr.res.ServiceSysCPU, fr.res.FakeCPU = dur(sys), dur(fu+fs)
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if st, err := fakeserver.NewRemote("http://"+fr.fake.control, nil).Stats(mctx); err == nil {
		fr.res.FakeTLS, fr.res.FakeTLSResumed = st.TLSHandshakes, st.TLSResumed
	}
	f, err := svc.api.Fleet(mctx)
	if err != nil {
		fr.res.Failure = strings.TrimPrefix(fr.res.Failure+"; fleet status: "+err.Error(), "; ")
		return
	}
	if r := f.Restore; r.Started != nil && r.Finished != nil {
		fr.res.AllConnected, fr.res.RestoreTook = dur(r.Finished.Sub(svc.started)), dur(r.Finished.Sub(*r.Started))
	}
	fr.res.Counts, fr.res.Connected = f.Counts, f.Counts[sessions.StateConnected]
	if fr.res.Connected != n && fr.res.Failure == "" {
		fr.res.Failure = fmt.Sprintf("%d of %d connected after the restore finished", fr.res.Connected, n)
	}
}

// measure waits until after has passed since all connected, then takes a
// snapshot. baseline may be nil.
func (fr *fleetRun) measure(ctx context.Context, after time.Duration, baseline *snapshot) *snapshot {
	select {
	case <-time.After(time.Until(fr.connectedAt.Add(after))):
	case <-ctx.Done():
		return nil
	}
	if !fr.svc.running() {
		return nil
	}
	s := &snapshot{After: dur(after)}
	if p, err := procfs.NewProc(fr.svc.pid()); err == nil {
		if st, err := p.NewStatus(); err == nil {
			s.HWM, s.Anon, s.File = int64(st.VmHWM), int64(st.RssAnon), int64(st.RssFile)
		}
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := fr.svc.api.Metrics(mctx)
	if err != nil {
		logf("  metrics: %v", err)
		return s
	}
	for name, v := range map[string]*float64{"process_resident_memory_bytes": &s.RSS, "go_goroutines": &s.Goroutines,
		"go_memstats_heap_inuse_bytes": &s.GoHeapInuse, "go_memstats_stack_inuse_bytes": &s.GoStackInuse,
		"go_memstats_sys_bytes": &s.GoSys, "process_open_fds": &s.FDs, "go_threads": &s.Threads} {
		*v, _ = client.Sample(m, name)
	}
	if limit, ok := client.Sample(m, "process_max_fds"); ok {
		fr.res.FDLimit = int(limit)
	}
	if n := float64(fr.res.Sessions); n > 0 {
		s.RSSOverN = s.RSS / n
		if baseline != nil {
			s.RSSPerSession = (s.RSS - baseline.RSS) / n
			s.GoroutinesPerSes = (s.Goroutines - baseline.Goroutines) / n
		}
	}
	return s
}

// stop stops the service (measuring its graceful shutdown), then the fake
// server, and removes the copied sessions unless a restart follows.
func (fr *fleetRun) stop() {
	fr.res.PeakFDs = fr.stopFDs()
	d, clean := fr.svc.stop(shutdownGrace)
	fr.res.Shutdown, fr.res.ShutdownClean = dur(d), clean
	fr.fake.stop(10 * time.Second)
	if !fr.keepDir {
		_ = os.RemoveAll(fr.runDir)
	}
}

// runRestore is the restore scenario for one size: a process restores n
// stored sessions, is measured once settled (and once idle, if asked),
// and is stopped.
func (b *bench) runRestore(ctx context.Context, n int, baseline *restoreResult, restart int) (restoreResult, error) {
	fr, err := b.startFleet(ctx, n, nil, restart)
	if err != nil {
		return restoreResult{}, err
	}
	fr.keepDir = n > 0 && restart < b.restarts
	var baseSettled, baseIdle *snapshot
	if baseline != nil {
		baseSettled, baseIdle = baseline.Settled, baseline.Idle
	}
	fr.res.Settled = fr.measure(ctx, b.settle, baseSettled)
	if b.idle > b.settle {
		fr.res.Idle = fr.measure(ctx, b.idle, baseIdle)
	}
	for _, s := range []*snapshot{fr.res.Settled, fr.res.Idle} {
		if s != nil {
			fr.res.PeakRSS = max(fr.res.PeakRSS, s.HWM)
		}
	}
	fr.stop()
	if fr.res.OK {
		logf("restore n=%d: all connected %v after start (took %v)", n, fr.res.AllConnected, fr.res.RestoreTook)
	} else {
		logf("restore n=%d FAILED: %s\n%s", n, fr.res.Failure, fr.svc.tail(12))
	}
	return fr.res, nil
}

// The template is one SESSIONS_DIR holding the most sessions any run asked
// for so far; countFile records how many are complete. A run copies the
// first N session directories, so every run restores the same untouched
// stores and seeding is paid once.
const countFile = ".bench-seeded"

// sessionID names the i-th seeded session.
func sessionID(i int) string { return fmt.Sprintf("s%05d", i) }

// ensureSeeded makes sure the template holds at least n sessions, seeding
// the missing ones (closed cleanly, as the service leaves them).
func (b *bench) ensureSeeded(ctx context.Context, n int) error {
	data, _ := os.ReadFile(filepath.Join(b.template, countFile))
	have, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if have >= n {
		return nil
	}
	began := time.Now()
	logf("seeding sessions %d..%d into %s", have, n-1, b.template)
	var seeds []fakeserver.Seed
	for i := have; i < n; i++ {
		seeds = append(seeds, fakeserver.Seed{ID: sessionID(i), User: fmt.Sprintf("1555%07d", i)})
	}
	opts := fakeserver.SeedOptions{Workers: b.seedWorkers, CleanClose: true}
	if err := fakeserver.SeedStores(ctx, b.template, seeds, opts); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	logf("seeded %d sessions in %v", n-have, time.Since(began).Round(time.Millisecond))
	return os.WriteFile(filepath.Join(b.template, countFile), []byte(strconv.Itoa(n)+"\n"), 0o600)
}

// copySessions makes dst a fresh SESSIONS_DIR holding real copies of the
// template's first n sessions (whatsapp.db alone with -store-files db),
// seeding the template first if it holds fewer.
func (b *bench) copySessions(ctx context.Context, dst string, n int) error {
	if err := b.ensureSeeded(ctx, n); err != nil {
		return err
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
					var data []byte
					if data, err = os.ReadFile(filepath.Join(b.template, name, e.Name())); err == nil {
						err = os.WriteFile(filepath.Join(dst, name, e.Name()), data, 0o600)
					}
				}
			}
			return err
		})
	}
	return g.Wait()
}

// logWatch looks for text in a growing log file, reading only what was
// added since it last looked.
type logWatch struct {
	path string
	text []byte
	off  int64
	tail []byte // the end of what was read, in case text spans two reads
}

// seen reports whether text is in the file by now.
func (w *logWatch) seen() bool {
	f, err := os.Open(w.path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf, err := io.ReadAll(io.NewSectionReader(f, w.off, 1<<40))
	if err != nil {
		return false
	}
	w.off += int64(len(buf))
	buf = append(w.tail, buf...)
	if bytes.Contains(buf, w.text) {
		return true
	}
	w.tail = buf[max(0, len(buf)-len(w.text)):]
	return false
}
