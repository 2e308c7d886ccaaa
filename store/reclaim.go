package store

import (
	"runtime/debug"
	"sync"
	"time"
)

// Reclaiming: when many store connections close together (a restore's
// sessions resting once connected, the stores of a burst of messaging
// idling out), most of the memory they held is free Go heap and garbage
// that the runtime keeps: its heap goal was set at the peak, an idle
// service collects only every two minutes, and the background scavenger
// returns pages slowly. Measured after 1,000 sessions messaged: ~100 KiB
// per session that went back to the kernel only with a full GC and
// scavenge (debug.FreeOSMemory). The reclaimer runs one after such a wave
// of closes, once it is over.
const (
	// reclaimMin is the smallest wave worth a reclaim: this many fewer
	// open connections than at the peak since the last one...
	reclaimMin = 64
	// ...and at most half of that peak still open.
	reclaimShare = 2
	// reclaimQuiet is how long no connection may close before the wave
	// counts as over; reclaimMaxWait bounds the wait for that.
	reclaimQuiet   = 250 * time.Millisecond
	reclaimMaxWait = 2 * time.Second
	// reclaimEvery is the least time between two reclaims: a full GC of
	// a large heap costs a few hundred milliseconds of CPU.
	reclaimEvery = 10 * time.Second
)

// reclaimer counts a Dir's open store connections and gives free memory
// back to the kernel after a wave of closes (see reclaimMin).
type reclaimer struct {
	free func() // debug.FreeOSMemory; tests count calls

	mu         sync.Mutex
	open, peak int
	// due is when the pending reclaim runs at the latest (zero: none
	// pending); last is when the last one ran.
	due, last time.Time
	timer     *time.Timer
	stopped   bool
	running   sync.WaitGroup
}

func newReclaimer() *reclaimer { return &reclaimer{free: debug.FreeOSMemory} }

// opened counts a connection opened.
func (r *reclaimer) opened() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open++
	r.peak = max(r.peak, r.open)
}

// closed counts a connection closed, and starts or puts off a reclaim.
func (r *reclaimer) closed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open--
	if r.stopped {
		return
	}
	now := time.Now()
	if !r.due.IsZero() {
		// A wave going on: wait for its end, within the bound.
		if r.timer.Stop() {
			r.timer.Reset(max(r.last.Add(reclaimEvery).Sub(now), min(reclaimQuiet, r.due.Sub(now)), 0))
		}
		return
	}
	if r.peak-r.open < reclaimMin || r.open*reclaimShare > r.peak {
		return
	}
	notBefore := r.last.Add(reclaimEvery)
	r.due = now.Add(reclaimMaxWait)
	if notBefore.After(r.due) {
		r.due = notBefore
	}
	wait := max(reclaimQuiet, notBefore.Sub(now))
	r.running.Add(1)
	r.timer = time.AfterFunc(wait, r.run)
}

// run reclaims, and starts counting the next wave from what is open now.
func (r *reclaimer) run() {
	defer r.running.Done()
	r.free()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.due, r.last, r.peak = time.Time{}, time.Now(), r.open
}

// stop cancels a pending reclaim and waits for one running.
func (r *reclaimer) stop() {
	r.mu.Lock()
	r.stopped = true
	if !r.due.IsZero() && r.timer.Stop() {
		r.due = time.Time{}
		r.running.Done()
	}
	r.mu.Unlock()
	r.running.Wait()
}
