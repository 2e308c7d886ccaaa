package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// restoreResult is what one fresh service process did with N stored
// sessions: how fast they came back, and what it costs once they have.
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
	// AllConnected is process start to the service's "restore finished"
	// log line (its own timestamp), which it writes once every restored
	// session has settled; RestoreTook is that line's "took", from the
	// restore's start inside the process.
	AllConnected dur `json:"allConnectedMs"`
	RestoreTook  dur `json:"restoreTookMs"`
	// ServiceCPU and FakeCPU are the CPU time (user + system) each process
	// had used when the restore finished: both share the machine's cores.
	ServiceCPU    dur `json:"serviceCpuMs"`
	ServiceSysCPU dur `json:"serviceSysCpuMs"` // the kernel's part of ServiceCPU
	FakeCPU       dur `json:"fakeCpuMs"`
	// FakeTLS and FakeTLSResumed are the TLS handshakes the fake server
	// completed by the end of the restore, and how many resumed a session.
	FakeTLS        int `json:"fakeTlsHandshakes"`
	FakeTLSResumed int `json:"fakeTlsResumed"`
	// taken's OtherCPU runs from the service's start to the end of the
	// restore.
	taken
	Connected  int            `json:"connected"`
	Counts     map[string]int `json:"counts,omitempty"`
	ErrorCodes map[string]int `json:"errorCodes,omitempty"`

	// PeakRSS is VmHWM at the last snapshot; PeakFDs and PeakThreads
	// are sampled every 100 ms until the service stops.
	PeakRSS     int64 `json:"peakRssBytes"`
	PeakFDs     int   `json:"peakOpenFiles"`
	PeakThreads int   `json:"peakThreads"`
	FDLimit     int   `json:"openFilesLimit"` // the service's process_max_fds
	// Settled is taken Settle after all connected; Idle, when asked for,
	// later, once the stores' idle connections have closed (30 s).
	Settled *snapshot `json:"settled,omitempty"`
	Idle    *snapshot `json:"idle,omitempty"`

	Shutdown      dur            `json:"shutdownMs"`
	ShutdownClean bool           `json:"shutdownClean"`
	LogLines      map[string]int `json:"logLinesByLevel,omitempty"`
	Problems      []string       `json:"problems,omitempty"` // first WARN/ERROR log lines
	LogFile       string         `json:"logFile"`
}

// fleetRun is a fake server and a service restoring N sessions, kept
// running for the scenarios that need connected sessions.
type fleetRun struct {
	res     restoreResult
	fake    *fakeWA
	svc     *service
	sampler *sampler
	window  *cpuWindow // from the service's start
	// connectedAt is when the restore ended (all connected, or given up).
	connectedAt time.Time
	ids         []string // the sessions' senderIds
	runDir      string   // the copied SESSIONS_DIR
	keepDir     bool     // a restart follows on runDir
}

// startFleet copies n seeded sessions into a fresh SESSIONS_DIR (for
// restart 0; a restart reuses the one the previous run left), starts a
// fake server and then the service (with extraEnv), and waits until the
// HTTP server answers and, for n > 0, the start-up restore has finished or
// the restore timeout passed. A restore that does not finish is a result
// (OK false), not an error: errors are for what stops the bench itself.
func startFleet(ctx context.Context, b *bench, n int, extraEnv []string, restart int) (*fleetRun, error) {
	extraEnv = append(append([]string(nil), b.serviceEnv...), extraEnv...)
	if err := ensureSeeded(ctx, b.template, n, b.seedWorkers, b.logf); err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("n%d", n)
	if len(extraEnv) > 0 {
		tag += "-" + sanitize(strings.Join(extraEnv, "-"))
	}
	runDir := filepath.Join(b.work, "run", tag)
	if restart > 0 {
		tag += fmt.Sprintf("-restart%d", restart)
	} else {
		began := time.Now()
		if err := copySessions(b.template, runDir, n, b.dbOnly); err != nil {
			return nil, fmt.Errorf("copy sessions: %w", err)
		}
		b.logf("n=%d %s: copied %d sessions (%d MiB) in %v", n, strings.Join(extraEnv, " "), n,
			dirSize(runDir)>>20, time.Since(began).Round(time.Millisecond))
	}

	// Write the copies out now, or the kernel's writeback would run during
	// the restore and count as someone else's load.
	syscall.Sync()
	fake, err := startFake(ctx, b.bins.fakewa, filepath.Join(b.work, "logs", "fakewa-"+tag+".log"))
	if err != nil {
		return nil, err
	}
	quiet := b.waitQuiet(ctx, fake.pid())
	window := startWindow(fake.pid())
	logPath := filepath.Join(b.work, "logs", "service-"+tag+".log")
	svc, err := startService(serviceOpts{bin: b.bins.service, sessionsDir: runDir, logPath: logPath,
		fake: fake, apiKey: b.apiKey, env: extraEnv})
	if err != nil {
		fake.stop(5 * time.Second)
		return nil, err
	}
	window.addNew(svc.pid())
	fr := &fleetRun{fake: fake, svc: svc, sampler: startSampler(svc.pid(), 100*time.Millisecond), window: window, runDir: runDir}
	fr.res = restoreResult{Sessions: n, Restart: restart, DBOnly: b.dbOnly && restart == 0,
		Env: strings.Join(extraEnv, " "), LogFile: logPath}
	fr.res.Quiet = quiet
	for i := range n {
		fr.ids = append(fr.ids, sessionID(i))
	}

	if err := waitHTTP(ctx, svc.proc, "http://"+svc.addr+"/healthz", 30*time.Second); err != nil {
		fr.res.Failure = err.Error()
		return fr, nil
	}
	fr.res.HTTPReady = dur(time.Since(svc.started))
	defer func() { fr.connectedAt = time.Now() }()
	if n == 0 {
		fr.res.OK = true
		fr.res.OtherCPU = dur(window.others())
		fr.res.OthersShare = share(time.Duration(fr.res.OtherCPU), time.Since(svc.started))
		return fr, nil
	}
	fr.waitRestore(ctx, b)
	return fr, nil
}

// waitRestore waits for the "restore finished" line, logging progress, and
// then checks with the API that every session is connected.
func (fr *fleetRun) waitRestore(ctx context.Context, b *bench) {
	n, svc := fr.res.Sessions, fr.svc
	deadline := time.NewTimer(b.restoreTimeout)
	defer deadline.Stop()
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-svc.gotDone:
			break wait
		case <-svc.exited:
			fr.res.Failure = fmt.Sprintf("the service exited during the restore (%v)", svc.waitErr)
			return
		case <-deadline.C:
			fr.res.Failure = fmt.Sprintf("the restore did not finish within %v", b.restoreTimeout)
			break wait
		case <-progress.C:
			b.logf("  n=%d: %d log lines so far, %v since start", n, svc.lineCount(), time.Since(svc.started).Round(time.Second))
		case <-ctx.Done():
			fr.res.Failure = ctx.Err().Error()
			return
		}
	}
	fr.res.OtherCPU = dur(fr.window.others())
	fr.res.OthersShare = share(time.Duration(fr.res.OtherCPU), time.Since(svc.started))
	if u, s, err := cpuTimes(svc.pid()); err == nil {
		fr.res.ServiceCPU, fr.res.ServiceSysCPU = dur(u+s), dur(s)
	}
	if c, err := cpuTime(fr.fake.pid()); err == nil {
		fr.res.FakeCPU = dur(c)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	if st, err := fakeserver.NewRemote("http://"+fr.fake.control, nil).Stats(sctx); err == nil {
		fr.res.FakeTLS, fr.res.FakeTLSResumed = st.TLSHandshakes, st.TLSResumed
	}
	scancel()
	if r := svc.restoreFinished(); r != nil {
		fr.res.AllConnected = dur(r.Time.Sub(svc.started))
		fr.res.RestoreTook = dur(r.Took)
	}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	f, err := svc.api.Fleet(fctx)
	if err != nil {
		fr.res.Failure = strings.TrimSpace(fr.res.Failure + "; fleet status: " + err.Error())
		return
	}
	fr.res.Counts = map[string]int{}
	for state, c := range f.Counts {
		fr.res.Counts[string(state)] = c
	}
	fr.res.Connected = f.Counts[sessions.StateConnected]
	for _, s := range f.Sessions {
		if s.State != "connected" && s.Error != nil {
			if fr.res.ErrorCodes == nil {
				fr.res.ErrorCodes = map[string]int{}
			}
			fr.res.ErrorCodes[string(s.State)+"/"+string(s.Error.Code)]++
		}
	}
	if fr.res.Connected == n && fr.res.Failure == "" {
		fr.res.OK = true
	} else if fr.res.Failure == "" {
		fr.res.Failure = fmt.Sprintf("%d of %d connected after the restore finished", fr.res.Connected, n)
	}
}

// stop stops the service (measuring its graceful shutdown), then the fake
// server, records the logs' summary, and removes the copied sessions
// unless asked to keep them.
func (fr *fleetRun) stop(b *bench) {
	defer func() {
		if !b.keepRuns && !fr.keepDir {
			_ = os.RemoveAll(fr.runDir)
		}
	}()
	grace := b.shutdownGrace
	fr.res.PeakFDs, fr.res.PeakThreads = fr.sampler.finish()
	d, clean := fr.svc.stop(grace)
	fr.res.Shutdown, fr.res.ShutdownClean = dur(d), clean
	fr.fake.stop(10 * time.Second)
	fr.res.LogLines, fr.res.Problems = fr.svc.logSummary()
	if !fr.res.OK && len(fr.res.Problems) == 0 {
		fr.res.Problems = fr.svc.lastLines()
	}
}

// runRestore is scenario 1 for one size: a fresh process restores n
// stored sessions, is measured once settled (and once idle, if idle > 0),
// and is stopped.
func runRestore(ctx context.Context, b *bench, n int, baseline *restoreResult, restart int) (restoreResult, error) {
	fr, err := startFleet(ctx, b, n, nil, restart)
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
			fr.res.PeakRSS = max(fr.res.PeakRSS, s.Mem.HWM)
		}
	}
	fr.stop(b)
	if fr.res.OK {
		rss := int64(0)
		if fr.res.Settled != nil {
			rss = fr.res.Settled.Mem.RSS
		}
		b.logf("restore n=%d: all connected %v after start (took %v), RSS %d MiB", n, fr.res.AllConnected,
			fr.res.RestoreTook, rss>>20)
	} else {
		b.logf("restore n=%d FAILED: %s", n, fr.res.Failure)
	}
	return fr.res, nil
}

// sanitize makes s usable in a file name.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}
