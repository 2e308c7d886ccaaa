package main

import (
	"context"
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

// profileResult is the in-process restore: the service built by app.New,
// as main.go builds it, inside the bench, with runtime/pprof on.
// Its figures include the bench itself; they explain, the restore
// scenario measures.
type profileResult struct {
	Sessions   int     `json:"sessions"`
	Took       dur     `json:"tookMs"`
	Connected  int     `json:"connected"`
	HeapInuse  uint64  `json:"heapInuseBytes"`
	StackInuse uint64  `json:"stackInuseBytes"`
	GoSys      uint64  `json:"goSysBytes"`
	RSS        int64   `json:"rssBytes"`
	Goroutines int     `json:"goroutines"`
	PerSession float64 `json:"heapInusePerSessionBytes"`
	CPUProfile string  `json:"cpuProfile"`
	HeapProf   string  `json:"heapProfile"`
	Goroutine  string  `json:"goroutineProfile"`
}

// runProfile restores n sessions in this process against an external
// fake server, with a CPU profile over the restore and heap and goroutine
// profiles once settled, written to outDir. The configuration comes from
// the environment with the service's defaults, as config.Load reads it.
func (b *bench) runProfile(ctx context.Context, n int, outDir string) (profileResult, error) {
	res := profileResult{Sessions: n}
	cfg, err := config.Load()
	if err != nil {
		return res, err
	}
	if err := b.ensureSeeded(ctx, n); err != nil {
		return res, err
	}
	runDir := filepath.Join(b.work, "run", fmt.Sprintf("profile-n%d", n))
	if err := b.copySessions(runDir, n); err != nil {
		return res, err
	}
	defer os.RemoveAll(runDir)
	fake, err := startFake(ctx, b.fakeBin, filepath.Join(b.work, "logs", "fakewa-profile.log"))
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
	mgr := a.Sessions()

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return res, err
	}
	res.CPUProfile = filepath.Join(outDir, fmt.Sprintf("restore-%d.cpu.pprof", n))
	cpu, err := os.Create(res.CPUProfile)
	if err != nil {
		return res, err
	}
	defer cpu.Close()
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return res, err
	}
	began := time.Now()
	if err := mgr.Restore(ctx, nil); err != nil {
		pprof.StopCPUProfile()
		return res, err
	}
	for {
		f, err := mgr.Fleet(ctx)
		if err == nil && f.Restore.Finished != nil {
			res.Took, res.Connected = dur(f.Restore.Finished.Sub(began)), f.Counts[sessions.StateConnected]
			break
		}
		if time.Since(began) > restoreTimeout {
			pprof.StopCPUProfile()
			return res, fmt.Errorf("in-process restore of %d did not finish within %v", n, restoreTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pprof.StopCPUProfile()
	logf("profile n=%d: restored in process in %v; settling %v", n, res.Took, b.settle)
	time.Sleep(b.settle)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapInuse, res.StackInuse, res.GoSys = ms.HeapInuse, ms.StackInuse, ms.Sys
	res.PerSession = float64(ms.HeapInuse) / float64(n)
	res.Goroutines = runtime.NumGoroutine()
	if p, err := procfs.Self(); err == nil {
		if st, err := p.Stat(); err == nil {
			res.RSS = int64(st.ResidentMemory())
		}
	}
	res.HeapProf = filepath.Join(outDir, fmt.Sprintf("restore-%d.heap.pprof", n))
	if err := writeProfile("heap", res.HeapProf, 0); err != nil {
		return res, err
	}
	res.Goroutine = filepath.Join(outDir, fmt.Sprintf("restore-%d.goroutines.txt", n))
	return res, writeProfile("goroutine", res.Goroutine, 1)
}

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string, debug int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
