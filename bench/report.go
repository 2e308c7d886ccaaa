package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything one bench invocation measured.
type report struct {
	Machine  machine         `json:"machine"`
	Args     []string        `json:"args"`
	Baseline *restoreResult  `json:"baseline,omitempty"`
	Restores []restoreResult `json:"restores,omitempty"`
	Loads    []loadResult    `json:"loads,omitempty"`
	Heals    []healResult    `json:"heals,omitempty"`
	Profiles []profileResult `json:"profiles,omitempty"`
	Work     string          `json:"workDir"`
}

// dur is a duration that reads as "1.234s" in tables and as milliseconds
// in JSON.
type dur time.Duration

// String rounds d to about three significant figures.
func (d dur) String() string {
	for _, r := range [][2]time.Duration{{10 * time.Second, 10 * time.Millisecond}, {time.Second, time.Millisecond},
		{10 * time.Millisecond, 100 * time.Microsecond}, {time.Millisecond, 10 * time.Microsecond}} {
		if time.Duration(d) >= r[0] {
			return time.Duration(d).Round(r[1]).String()
		}
	}
	return time.Duration(d).Round(time.Microsecond).String()
}

// MarshalJSON writes the duration in milliseconds, as a number.
func (d dur) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(d) / float64(time.Millisecond))
}

// kib formats bytes as KiB, MiB beyond 10 MiB.
func kib[T int64 | float64](x T) string {
	b := int64(x)
	if b >= 10<<20 || b <= -10<<20 {
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", b>>10)
}

// others shows how much of the machine other processes took during a
// measurement, and the load average at its end.
func others(t taken) string {
	return fmt.Sprintf("%.0f%% (load %.1f)", 100*t.OthersShare, t.Load1)
}

// writeTables prints the figures as aligned tables.
func (r *report) writeTables(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s RAM, Linux %s, %s, RLIMIT_NOFILE %d, commit %s",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.Go, m.NoFile, m.Commit)
	if m.Dirty {
		fmt.Fprint(w, " (with uncommitted changes)")
	}
	fmt.Fprintln(w)

	if len(r.Restores) > 0 || r.Baseline != nil {
		rows := r.Restores
		if r.Baseline != nil {
			rows = append([]restoreResult{*r.Baseline}, rows...)
		}
		writeRestores(w, rows)
	}

	if len(r.Loads) > 0 {
		fmt.Fprintln(w, "\nStatus under load (closed loop on loopback; the generator shares the CPUs)")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "route\tsessions\tclients\tduration\trequests\terrors\treq/s\tp50\tp90\tp99\tmax\tbytes\tothers\t")
		for _, x := range r.Loads {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%d\t%d\t%.0f\t%v\t%v\t%v\t%v\t%d\t%s\t\n", x.Name, x.Sessions, x.Clients, x.Duration,
				x.Requests, x.Errors, x.RPS, x.Latency.P50, x.Latency.P90, x.Latency.P99, x.Latency.Max, x.Bytes, others(x.taken))
		}
		tw.Flush()
		for _, x := range r.Loads {
			firstError(w, x.FirstErr, "%s at %d clients", x.Name, x.Clients)
		}
	}

	if len(r.Heals) > 0 {
		fmt.Fprintln(w, "\nSelf-healing: injection to connected again (service's lastConnectedAt; observed = first poll that saw it)")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "injected\tBACKOFF_MIN\truns\tfailed\tmin\tp50\tp90\tp99\tmax\tobserved p50\tobserved p99\tstale connected\tothers\t")
		for _, x := range r.Heals {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%v\t%v\t%v\t%v\t%v\t%v\t%v\t%d\t%s\t\n", x.Kind, x.BackoffMin, x.Runs, x.Failed,
				x.Service.Min, x.Service.P50, x.Service.P90, x.Service.P99, x.Service.Max, x.Observed.P50, x.Observed.P99, x.StaleConnected, others(x.taken))
		}
		tw.Flush()
		for _, x := range r.Heals {
			firstError(w, x.FirstErr, "%s (BACKOFF_MIN %s)", x.Kind, x.BackoffMin)
		}
	}

	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nIn-process restore of %d sessions (profiled; figures include the bench): took %v, %d connected,\n", p.Sessions, p.Took, p.Connected)
		fmt.Fprintf(w, "  after GC: heap in use %s (%s/session), stacks %s, Go sys %s, RSS %s, %d goroutines\n",
			kib(int64(p.HeapInuse)), kib(p.PerSession), kib(int64(p.StackInuse)), kib(int64(p.GoSys)), kib(p.RSS), p.Goroutines)
		fmt.Fprintf(w, "  go tool pprof -top %s\n  go tool pprof -top -sample_index=inuse_space %s\n  less %s\n",
			p.CPUProfile, p.HeapProf, p.Goroutine)
	}
	fmt.Fprintf(w, "\nlogs and profiles: %s\n", strings.TrimSuffix(r.Work, "/"))
}

// storesLabel says which stores a restore run started from.
func storesLabel(x restoreResult) string {
	switch {
	case x.Restart > 0:
		return fmt.Sprintf("restart %d", x.Restart)
	case x.DBOnly:
		return "copied, db only"
	}
	return "copied"
}

// writeRestores prints the restore runs: timing, then one line per
// snapshot.
func writeRestores(w io.Writer, rows []restoreResult) {
	fmt.Fprintln(w, "\nRestore of N stored sessions by a fresh process (fake WhatsApp server in its own process)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sessions\tstores\tok\tHTTP up\tall connected\trestore took\tservice CPU\tper session\tof it kernel\tfake CPU\tTLS (resumed)\tothers\tpeak RSS\tpeak files\tfile limit\tshutdown\t")
	for _, x := range rows {
		ok := "yes"
		if !x.OK {
			ok = "NO"
		}
		stores, perSes := storesLabel(x), "-"
		if x.Sessions > 0 {
			perSes = fmt.Sprintf("%.2fms", float64(time.Duration(x.ServiceCPU))/float64(time.Millisecond)/float64(x.Sessions))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%v\t%v\t%v\t%s\t%v\t%v\t%d (%d)\t%s\t%s\t%d\t%d\t%v\t\n",
			x.Sessions, stores, ok, x.HTTPReady, x.AllConnected, x.RestoreTook, x.ServiceCPU, perSes, x.ServiceSysCPU, x.FakeCPU,
			x.FakeTLS, x.FakeTLSResumed, others(x.taken), kib(x.PeakRSS), x.PeakFDs, x.FDLimit, x.Shutdown)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nResources after all connected (per session: minus the 0-session baseline at the same moment)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sessions\tstores\tafter\tRSS\tper session\tRSS/N\tRssAnon\tRssFile\tGo heap in use\tGo stacks\tGo sys\tfiles\tgoroutines\tper session\tthreads\t")
	for _, x := range rows {
		for _, s := range []*snapshot{x.Settled, x.Idle} {
			if s == nil {
				continue
			}
			perSes, overN, gPer := "-", "-", "-"
			if x.Sessions > 0 {
				perSes, overN, gPer = kib(s.RSSPerSession), kib(s.RSSOverN), fmt.Sprintf("%.2f", s.GoroutinesPerSes)
			}
			fmt.Fprintf(tw, "%d\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%.0f\t\n",
				x.Sessions, storesLabel(x), s.After, kib(s.RSS), perSes, overN, kib(s.Anon), kib(s.File),
				kib(s.GoHeapInuse), kib(s.GoStackInuse), kib(s.GoSys), s.FDs, s.Goroutines, gPer, s.Threads)
		}
	}
	tw.Flush()

	for _, x := range rows {
		if x.OK {
			continue
		}
		fmt.Fprintf(w, "\nn=%d FAILED: %s\n  counts %v, peak open files %d (limit %d)\n  log: %s\n",
			x.Sessions, x.Failure, x.Counts, x.PeakFDs, x.FDLimit, x.LogFile)
	}
}

// firstError prints a measurement's first error, if it had one, after
// what names the measurement.
func firstError(w io.Writer, err, format string, args ...any) {
	if err != "" {
		fmt.Fprintf(w, "  %s, first error: %s\n", fmt.Sprintf(format, args...), err)
	}
}
