package main

import (
	"context"
	"time"
)

// snapshot is the service's resources at one moment; the per-session
// figures subtract the same binary's with no session (the baseline).
type snapshot struct {
	After            dur              `json:"afterMs"` // after all connected
	Mem              memInfo          `json:"mem"`
	Smaps            map[string]int64 `json:"smapsRollup,omitempty"`
	RSSPerSession    int64            `json:"rssPerSessionBytes"`   // (RSS - baseline RSS) / N
	RSSOverN         int64            `json:"rssOverSessionsBytes"` // RSS / N
	GoHeapInuse      float64          `json:"goHeapInuseBytes"`     // go_memstats_heap_inuse_bytes
	GoStackInuse     float64          `json:"goStackInuseBytes"`    // go_memstats_stack_inuse_bytes
	GoSys            float64          `json:"goSysBytes"`           // go_memstats_sys_bytes
	FDs              int              `json:"openFiles"`
	Goroutines       float64          `json:"goroutines"`           // go_goroutines
	GoroutinesPerSes float64          `json:"goroutinesPerSession"` // (goroutines - baseline) / N
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
	s.Smaps, _ = smapsRollup(pid)
	s.FDs, _ = countFDs(pid)
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if m, err := fr.svc.api.scrape(mctx, "go_goroutines", "go_memstats_heap_inuse_bytes",
		"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes"); err == nil {
		s.Goroutines = m["go_goroutines"]
		s.GoHeapInuse = m["go_memstats_heap_inuse_bytes"]
		s.GoStackInuse = m["go_memstats_stack_inuse_bytes"]
		s.GoSys = m["go_memstats_sys_bytes"]
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
