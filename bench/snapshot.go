package main

import (
	"context"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
)

// snapshot is the service's resources at one moment; the per-session
// figures subtract the same binary's with no session (the baseline).
type snapshot struct {
	After            dur     `json:"afterMs"` // after all connected
	Mem              memInfo `json:"mem"`
	RSSPerSession    int64   `json:"rssPerSessionBytes"`   // (RSS - baseline RSS) / N
	RSSOverN         int64   `json:"rssOverSessionsBytes"` // RSS / N
	GoHeapInuse      float64 `json:"goHeapInuseBytes"`     // go_memstats_heap_inuse_bytes
	GoStackInuse     float64 `json:"goStackInuseBytes"`    // go_memstats_stack_inuse_bytes
	GoSys            float64 `json:"goSysBytes"`           // go_memstats_sys_bytes
	FDs              float64 `json:"openFiles"`
	Goroutines       float64 `json:"goroutines"`           // go_goroutines
	GoroutinesPerSes float64 `json:"goroutinesPerSession"` // (goroutines - baseline) / N
}

// measure waits until after has passed since all connected (the end of
// the restore), then takes a snapshot. baseline may be nil.
func (fr *fleetRun) measure(ctx context.Context, after time.Duration, baseline *snapshot) *snapshot {
	if !fr.svc.running() {
		return nil
	}
	select {
	case <-time.After(time.Until(fr.connectedAt.Add(after))):
	case <-ctx.Done():
		return nil
	}
	pid := fr.svc.pid()
	s := &snapshot{After: dur(after)}
	s.Mem, _ = readMem(pid)
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if m, err := fr.svc.api.Metrics(mctx); err == nil {
		s.Goroutines, _ = client.Sample(m, "go_goroutines")
		s.GoHeapInuse, _ = client.Sample(m, "go_memstats_heap_inuse_bytes")
		s.GoStackInuse, _ = client.Sample(m, "go_memstats_stack_inuse_bytes")
		s.GoSys, _ = client.Sample(m, "go_memstats_sys_bytes")
		s.FDs, _ = client.Sample(m, "process_open_fds")
		if limit, ok := client.Sample(m, "process_max_fds"); ok {
			fr.res.FDLimit = int(limit)
		}
	}
	if n := int64(fr.res.Sessions); n > 0 {
		s.RSSOverN = s.Mem.RSS / n
		if baseline != nil {
			s.RSSPerSession = (s.Mem.RSS - baseline.Mem.RSS) / n
			s.GoroutinesPerSes = (s.Goroutines - baseline.Goroutines) / float64(n)
		}
	}
	return s
}
