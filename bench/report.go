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
	Machine  string          `json:"machine"`
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

// table prints a titled table, one row per line; cells print with %v
// (dur rounds itself), floats with no decimals.
func table(w io.Writer, title, header string, rows [][]any) {
	fmt.Fprintln(w, "\n"+title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.ReplaceAll(header, ",", "\t")+"\t")
	for _, row := range rows {
		for _, c := range row {
			if f, ok := c.(float64); ok {
				c = fmt.Sprintf("%.0f", f)
			}
			fmt.Fprintf(tw, "%v\t", c)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// writeTables prints the figures as aligned tables.
func (r *report) writeTables(w io.Writer) {
	fmt.Fprintln(w, "machine:", r.Machine)
	var runs, snaps, loads, heals [][]any
	var notes []string
	rows := r.Restores
	if r.Baseline != nil {
		rows = append([]restoreResult{*r.Baseline}, rows...)
	}
	for _, x := range rows {
		// The baseline's window (start to HTTP up) is too short for others' CPU.
		stores, perSes, ok, oth := "copied", "-", "yes", "-"
		if x.Restart > 0 {
			stores = fmt.Sprintf("restart %d", x.Restart)
		} else if x.DBOnly {
			stores = "copied, db only"
		}
		if x.Sessions > 0 {
			oth = others(x.taken)
			perSes = fmt.Sprintf("%.2fms", float64(time.Duration(x.ServiceCPU))/float64(time.Millisecond)/float64(x.Sessions))
		}
		if !x.OK {
			ok = "NO"
			notes = append(notes, fmt.Sprintf("n=%d FAILED: %s; counts %v; log: %s", x.Sessions, x.Failure, x.Counts, x.LogFile))
		}
		runs = append(runs, []any{x.Sessions, stores, ok, x.HTTPReady, x.AllConnected, x.RestoreTook, x.ServiceCPU, perSes,
			x.ServiceSysCPU, x.FakeCPU, fmt.Sprintf("%d (%d)", x.FakeTLS, x.FakeTLSResumed), oth, kib(x.PeakRSS),
			x.PeakFDs, x.FDLimit, x.Shutdown})
		for _, s := range []*snapshot{x.Settled, x.Idle} {
			if s == nil {
				continue
			}
			perSes, overN, gPer := "-", "-", "-"
			if x.Sessions > 0 {
				perSes, overN, gPer = kib(s.RSSPerSession), kib(s.RSSOverN), fmt.Sprintf("%.2f", s.GoroutinesPerSes)
			}
			snaps = append(snaps, []any{x.Sessions, stores, s.After, kib(s.RSS), perSes, overN, kib(s.Anon), kib(s.File),
				kib(s.GoHeapInuse), kib(s.GoStackInuse), kib(s.GoSys), s.FDs, s.Goroutines, gPer, s.Threads})
		}
	}
	if len(runs) > 0 {
		table(w, "Restore of N stored sessions by a fresh process (fake WhatsApp server in its own process)",
			"sessions,stores,ok,HTTP up,all connected,restore took,service CPU,per session,of it kernel,fake CPU,TLS (resumed),others,peak RSS,peak files,file limit,shutdown", runs)
		table(w, "Resources after all connected (per session: minus the 0-session baseline at the same moment)",
			"sessions,stores,after,RSS,per session,RSS/N,RssAnon,RssFile,Go heap in use,Go stacks,Go sys,files,goroutines,per session,threads", snaps)
	}
	for _, x := range r.Loads {
		l := x.Latency
		loads = append(loads, []any{x.Name, x.Sessions, x.Clients, x.Duration, x.Requests, x.Errors, x.RPS, l.P50, l.P90, l.P99, l.Max, x.Bytes, others(x.taken)})
		if x.FirstErr != "" {
			notes = append(notes, fmt.Sprintf("%s at %d clients, first error: %s", x.Name, x.Clients, x.FirstErr))
		}
	}
	if len(loads) > 0 {
		table(w, "Status under load (closed loop on loopback; the generator shares the CPUs)",
			"route,sessions,clients,duration,requests,errors,req/s,p50,p90,p99,max,bytes,others", loads)
	}
	for _, x := range r.Heals {
		s := x.Service
		heals = append(heals, []any{x.Kind, x.BackoffMin, x.Runs, x.Failed, s.Min, s.P50, s.P90, s.P99, s.Max, x.Observed.P50, x.Observed.P99, x.StaleConnected, others(x.taken)})
		if x.FirstErr != "" {
			notes = append(notes, fmt.Sprintf("%s (BACKOFF_MIN %s), first error: %s", x.Kind, x.BackoffMin, x.FirstErr))
		}
	}
	if len(heals) > 0 {
		table(w, "Self-healing: injection to connected again (service's lastConnectedAt; observed = first poll that saw it)",
			"injected,BACKOFF_MIN,runs,failed,min,p50,p90,p99,max,observed p50,observed p99,stale connected,others", heals)
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nIn-process restore of %d sessions (profiled; figures include the bench): took %v, %d connected,\n", p.Sessions, p.Took, p.Connected)
		fmt.Fprintf(w, "  after GC: heap in use %s (%s/session), stacks %s, Go sys %s, RSS %s, %d goroutines\n",
			kib(int64(p.HeapInuse)), kib(p.PerSession), kib(int64(p.StackInuse)), kib(int64(p.GoSys)), kib(int64(p.RSS)), p.Goroutines)
		fmt.Fprintf(w, "  go tool pprof -top %[1]s.cpu.pprof\n  go tool pprof -top -sample_index=inuse_space %[1]s.heap.pprof\n  less %[1]s.goroutines.txt\n", p.Profiles)
	}
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
	fmt.Fprintf(w, "\nlogs and profiles: %s\n", strings.TrimSuffix(r.Work, "/"))
}
