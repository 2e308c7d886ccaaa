package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/prometheus/procfs"
	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// profileResult is the in-process restore (app.New, as main.go builds the
// service) under runtime/pprof. Its figures include the bench: it explains,
// the restore scenario measures.
type profileResult struct {
	sessions, connected, goroutines, rss int
	took                                 dur
	mem                                  runtime.MemStats // after GC, once settled
	profiles                             string           // path prefix of .cpu.pprof, .heap.pprof, .goroutines.txt
}

// runProfile restores n sessions in this process against cmd/fakewa, with
// a CPU profile over the restore and heap and goroutine profiles once
// settled, under -work/profiles; the rest of the configuration is
// config.Load's (environment, defaults).
func (b *bench) runProfile(ctx context.Context, n int) (profileResult, error) {
	outDir := filepath.Join(b.work, "profiles")
	res := profileResult{sessions: n, profiles: filepath.Join(outDir, fmt.Sprintf("restore-%d", n))}
	cfg, err := config.Load()
	if err != nil {
		return res, err
	}
	runDir := filepath.Join(b.work, "run", fmt.Sprintf("profile-n%d", n))
	if err := b.copySessions(ctx, runDir, n); err != nil {
		return res, err
	}
	defer os.RemoveAll(runDir)
	fake, err := startFake(ctx, b.fakeBin, b.fakeEnv, filepath.Join(b.work, "logs", "fakewa-profile.log"))
	if err != nil {
		return res, err
	}
	defer fake.stop(10 * time.Second)
	logFile, err := os.Create(filepath.Join(b.work, "logs", "inproc-profile.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	cfg.SessionsDir, cfg.HTTPAddr, cfg.MetricsAddr, cfg.APIKey = runDir, "127.0.0.1:0", "", b.apiKey
	cfg.TestMode, cfg.AutoRestore, cfg.LogFormat, cfg.StoreIdleTimeout = true, false, "json", 30*time.Second
	cfg.FakeServerAddr, cfg.FakeControlURL, cfg.FakeCAFile = fake.addr, "http://"+fake.control, fake.caFile
	a, err := app.New(cfg, logFile)
	if err != nil {
		return res, err
	}
	defer a.Close()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return res, err
	}
	cpu, err := os.Create(res.profiles + ".cpu.pprof")
	if err != nil {
		return res, err
	}
	defer cpu.Close()
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return res, err
	}
	began := time.Now()
	err = a.Sessions().Restore(ctx, nil)
	for err == nil {
		f, ferr := a.Sessions().Fleet(ctx)
		if ferr == nil && f.Restore.Finished != nil {
			res.took, res.connected = dur(f.Restore.Finished.Sub(began)), f.Counts[sessions.StateConnected]
			break
		} else if time.Since(began) > restoreTimeout {
			err = fmt.Errorf("in-process restore of %d did not finish within %v", n, restoreTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pprof.StopCPUProfile()
	if err != nil {
		return res, err
	}
	logf("profile n=%d: restored in process in %v; settling %v", n, res.took, b.settle)
	time.Sleep(b.settle)

	runtime.GC()
	runtime.ReadMemStats(&res.mem)
	res.goroutines = runtime.NumGoroutine()
	self, _ := procfs.Self()
	if stat, err := self.Stat(); err == nil {
		res.rss = stat.ResidentMemory()
	}
	for _, p := range []struct {
		name, suffix string
		debug        int // 1: goroutines as text
	}{{"heap", ".heap.pprof", 0}, {"goroutine", ".goroutines.txt", 1}} {
		f, err := os.Create(res.profiles + p.suffix)
		if err == nil {
			err = errors.Join(pprof.Lookup(p.name).WriteTo(f, p.debug), f.Close())
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}
