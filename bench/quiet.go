package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The machine is shared (other people's tests, builds): every figure
// carries the CPU time that processes other than the bench, the service
// and the fake server used while it was taken, and runs wait for a quiet
// machine first.

// machineBusy is the CPU time all CPUs have spent not idle since boot,
// from the first line of /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat: %q", line)
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal: all but idle, iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// cpuWindow measures the CPU that others use between its start and the
// call to others.
type cpuWindow struct {
	pids    []int
	machine time.Duration
	own     []time.Duration
}

// startWindow starts counting; pids are ours (the bench is added).
func startWindow(pids ...int) *cpuWindow {
	w := &cpuWindow{pids: append([]int{os.Getpid()}, pids...)}
	w.machine, _ = machineBusy()
	for _, p := range w.pids {
		c, _ := cpuTime(p)
		w.own = append(w.own, c)
	}
	return w
}

// addNew counts pid as ours from its start: it was started after the
// window.
func (w *cpuWindow) addNew(pid int) {
	w.pids = append(w.pids, pid)
	w.own = append(w.own, 0)
}

// others is the CPU time used since start by every process but ours.
// Processes of ours must still be running.
func (w *cpuWindow) others() time.Duration {
	m, _ := machineBusy()
	d := m - w.machine
	for i, p := range w.pids {
		c, _ := cpuTime(p)
		d -= c - w.own[i]
	}
	return max(d, 0)
}

// waitQuiet waits until processes other than the bench and ours (pids)
// have used less than threshold CPUs for one second, or maxWait has
// passed; it reports whether the machine was quiet. With maxWait 0 it
// looks once and does not wait.
func waitQuiet(ctx context.Context, maxWait time.Duration, threshold float64, logf func(string, ...any), pids ...int) bool {
	deadline := time.Now().Add(maxWait)
	warned := false
	for {
		w := startWindow(pids...)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
		busy := w.others().Seconds()
		if busy < threshold {
			return true
		}
		if !time.Now().Before(deadline) {
			logf("  the machine is busy (%.2f CPUs used by others); measuring anyway", busy)
			return false
		}
		if !warned {
			logf("  waiting for a quiet machine (%.2f CPUs used by others)...", busy)
			warned = true
		}
	}
}

// share is the part of the machine's CPU capacity over d that others'
// CPU time other amounts to.
func share(other, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return other.Seconds() / (d.Seconds() * float64(runtime.NumCPU()))
}

// measured is a result that knows how it was taken.
type measured interface {
	setTries(tries int)
}

// cleanest runs measure (try 0, 1, ...) until the share of the machine
// that other processes took during a run (measure's second result) is at
// most b.maxOthers, or b.retries retries are spent, and returns the run in
// which that share was lowest. measure waits for a quiet machine itself, at
// the moment that suits it.
func cleanest[T measured](ctx context.Context, b *bench, what string, measure func(try int) (T, float64, error)) (T, error) {
	var best T
	bestShare := -1.0
	for try := 0; try <= b.retries; try++ {
		if try == 0 {
			b.logf("%s", what)
		} else {
			b.logf("%s: again, others took %.0f%% of the machine", what, 100*bestShare)
		}
		r, sh, err := measure(try)
		if err != nil {
			return r, err
		}
		if bestShare < 0 || sh < bestShare {
			best, bestShare = r, sh
		}
		best.setTries(try + 1)
		if sh <= b.maxOthers || ctx.Err() != nil {
			break
		}
	}
	return best, ctx.Err()
}

// taken is how a measurement went, machine-wise: OtherCPU is the CPU time
// processes other than ours used during it, OthersShare that as a part of
// the machine's capacity, Quiet whether the machine was quiet when it
// began, and Tries how many runs were made to keep this one.
type taken struct {
	OtherCPU    dur     `json:"otherCpuMs"`
	OthersShare float64 `json:"othersShare"`
	Quiet       bool    `json:"quiet"`
	Tries       int     `json:"tries"`
}

// setTries records how many runs were made.
func (t *taken) setTries(tries int) { t.Tries = tries }
