package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything one bench invocation measured.
type report struct {
	machine   string
	settle    time.Duration
	restores  []restoreResult
	loads     []loadResult
	heals     []healResult
	profiles  []profileResult
	messaging []messagingResult
	streams   []streamResult
	clusters  []clusterResult
	work      string
}

// dur is a duration that prints rounded to about three significant figures.
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

// kib formats bytes as KiB, MiB beyond 10 MiB.
func kib[T int64 | float64 | uint64 | int](x T) string {
	if b := float64(x); b >= 10<<20 || b <= -10<<20 {
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%d KiB", int64(x)>>10)
}

// others shows how much of the machine other processes took during a
// measurement, and the load average at its end.
func others(t taken) string { return fmt.Sprintf("%.0f%% (load %.1f)", 100*t.othersShare, t.load1) }

// table prints a titled table (if it has rows), one row per line; cells
// print with %v (dur rounds itself), floats with no decimals.
func table(w io.Writer, title, header string, rows [][]any) {
	if len(rows) == 0 {
		return
	}
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
	fmt.Fprintln(w, "machine:", r.machine)
	var runs, snaps, loads, heals [][]any
	var notes []string
	for _, x := range r.restores {
		// The baseline's window (start to HTTP up) is too short for others' CPU.
		stores, perSes, ok, oth, rssPer, gPer := "copied", "-", "yes", "-", "-", "-"
		if x.restart > 0 {
			stores = fmt.Sprintf("restart %d", x.restart)
		} else if x.dbOnly {
			stores = "copied, db only"
		}
		if x.sessions > 0 {
			oth = others(x.taken)
			perSes = fmt.Sprintf("%.2fms", float64(time.Duration(x.serviceCPU))/float64(time.Millisecond)/float64(x.sessions))
		}
		if !x.ok {
			ok = "NO"
			notes = append(notes, fmt.Sprintf("n=%d FAILED: %s; counts %v; log: %s", x.sessions, x.failure, x.counts, x.logFile))
		}
		runs = append(runs, []any{x.sessions, stores, ok, x.httpReady, x.allConnected, x.restoreTook, x.serviceCPU, perSes,
			x.serviceSysCPU, x.fakeCPU, fmt.Sprintf("%d (%d)", x.fakeTLS, x.fakeTLSResumed), oth, kib(x.peakRSS),
			x.peakFDs, x.fdLimit, x.shutdown})
		if x.measured {
			if x.sessions > 0 {
				rssPer, gPer = kib(x.rssPerSession), fmt.Sprintf("%.2f", x.goroutinesPerSes)
			}
			snaps = append(snaps, []any{x.sessions, stores, kib(x.rss), rssPer, kib(x.goHeapInuse),
				kib(x.goStackInuse), kib(x.goSys), x.fds, x.goroutines, gPer})
		}
	}
	table(w, "Restore of N stored sessions by a fresh process (fake WhatsApp server in its own process)",
		"sessions,stores,ok,HTTP up,all connected,restore took,service CPU,per session,of it kernel,fake CPU,TLS (resumed),others,peak RSS,peak files,file limit,shutdown", runs)
	table(w, fmt.Sprintf("Resources %v after all connected (per session: minus the 0-session baseline)", r.settle),
		"sessions,stores,RSS,per session,Go heap in use,Go stacks,Go sys,files,goroutines,per session", snaps)
	for _, x := range r.loads {
		l := x.latency
		loads = append(loads, []any{x.name, x.sessions, x.clients, x.duration, x.requests, x.errors, x.rps, l.p50, l.p90, l.p99, l.max, x.bytes, others(x.taken)})
		if x.firstErr != "" {
			notes = append(notes, fmt.Sprintf("%s at %d clients, first error: %s", x.name, x.clients, x.firstErr))
		}
	}
	table(w, "Status under load (closed loop on loopback; the generator shares the CPUs)",
		"route,sessions,clients,duration,requests,errors,req/s,p50,p90,p99,max,bytes,others", loads)
	for _, x := range r.heals {
		s := x.service
		heals = append(heals, []any{x.kind, x.backoffMin, x.runs, x.failed, s.min, s.p50, s.p90, s.p99, s.max, x.observed.p50, x.observed.p99, x.staleConnected, others(x.taken)})
		if x.firstErr != "" {
			notes = append(notes, fmt.Sprintf("%s (BACKOFF_MIN %s), first error: %s", x.kind, x.backoffMin, x.firstErr))
		}
	}
	table(w, "Self-healing: injection to connected again (service's lastConnectedAt; observed = first poll that saw it)",
		"injected,BACKOFF_MIN,runs,failed,min,p50,p90,p99,max,observed p50,observed p99,stale connected,others", heals)
	for _, p := range r.profiles {
		fmt.Fprintf(w, "\nIn-process restore of %d sessions (profiled; figures include the bench): took %v, %d connected,\n", p.sessions, p.took, p.connected)
		fmt.Fprintf(w, "  after GC: heap in use %s (%s/session), stacks %s, Go sys %s, RSS %s, %d goroutines\n",
			kib(p.mem.HeapInuse), kib(float64(p.mem.HeapInuse)/float64(p.sessions)), kib(p.mem.StackInuse), kib(p.mem.Sys), kib(p.rss), p.goroutines)
		fmt.Fprintf(w, "  go tool pprof -top %[1]s.cpu.pprof\n  go tool pprof -top -sample_index=inuse_space %[1]s.heap.pprof\n  less %[1]s.goroutines.txt\n", p.profiles)
	}
	for _, m := range r.messaging {
		writeMessaging(w, m)
	}
	writeStreams(w, r.streams)
	writeClusters(w, r.clusters)
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
	fmt.Fprintf(w, "\nlogs and profiles: %s\n", strings.TrimSuffix(r.work, "/"))
}

// writeMessaging prints the messaging scenario's figures.
func writeMessaging(w io.Writer, m messagingResult) {
	cpuPer := func(p msgPhase, n int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0fµs", float64(time.Duration(p.serviceCPU))/float64(time.Microsecond)/float64(n))
	}
	r, s := m.recv, m.send
	var settled any = m.recvLater.p99
	if m.recvLater.max == 0 { // a phase shorter than recvSettled
		settled = "-"
	}
	table(w, fmt.Sprintf("Messaging, %d connected sessions: contacts send, a webhook receiver in the bench gets message.received", m.sessions),
		"rate,for,sent,send errors,delivered,missing,dup ids,p50,p99,max,p99 from 10 s on,behind max,queue max (samples),drained,generator late,service CPU,per message,fake CPU,bench CPU,others",
		[][]any{{r.rate, r.duration, r.sent, r.errors, m.delivered, m.missing, m.duplicateIDs, r.latency.p50, r.latency.p99, r.latency.max, settled,
			m.maxBehind, fmt.Sprintf("%.0f (%d)", m.maxDepth, m.depthSamples), r.drained, r.generatorLate, r.serviceCPU, cpuPer(r, m.delivered), r.fakeCPU, r.self, others(r.taken)}})
	table(w, "Messaging: sessions send through POST /api/whatsapp/session/{id}/messages (latency to the 200)",
		"rate,for,sent,errors,p50,p90,p99,max,p99 after each session's first,generator late,service CPU,per message,fake CPU,bench CPU,others",
		[][]any{{s.rate, s.duration, s.sent, s.errors, s.latency.p50, s.latency.p90, s.latency.p99, s.latency.max, m.sendLater.p99,
			s.generatorLate, s.serviceCPU, cpuPer(s, s.sent), s.fakeCPU, s.self, others(s.taken)}})
	fmt.Fprintf(w, "  receiver: events %v; deliveries with a webhook-id seen before: %d; bad signatures: %d\n", m.events, m.duplicates, m.badSignatures)
	fmt.Fprintf(w, "  whatsapp_webhook_delivery_seconds (from the event's WhatsApp timestamp, whole seconds): le 0.5/1/2.5 s and count: %v\n", m.deliverySeconds)
	rested := ""
	if m.rssRested > 0 {
		rested = fmt.Sprintf(", %s at rest (-msg-rest after both phases)", kib(m.rssRested))
	}
	fmt.Fprintf(w, "  RSS per session (minus a 0-session service): %s connected and settled, %s after both phases%s; fake server: %d undecryptable, %d queued; shutdown %v\n",
		kib(m.rssBefore), kib(m.rssAfter), rested, m.fakeUndecryptable, m.fakeQueued, m.shutdown)
	for _, e := range []string{r.firstErr, s.firstErr, m.failure} {
		if e != "" {
			fmt.Fprintln(w, "  error: "+e)
		}
	}
}

// writeClusters prints the cluster scenario's figures.
func writeClusters(w io.Writer, cs []clusterResult) {
	var runs, kills [][]any
	for _, c := range cs {
		ok := "yes"
		if !c.ok {
			ok = "NO: " + c.failure
		}
		var hosted, rss, peak []string
		for _, nd := range c.nodes {
			hosted = append(hosted, strconv.Itoa(nd.sessions))
			rss, peak = append(rss, kib(nd.rss)), append(peak, kib(nd.peakRSS))
		}
		n := float64(max(c.sessions, 1))
		runs = append(runs, []any{c.sessions, c.run, ok, c.migrate, c.allConnected, strings.Join(hosted, "/"), strings.Join(rss, " / "),
			strings.Join(peak, " / "), c.pgConns, fmt.Sprintf("%.1f", float64(c.pgRows)/n), fmt.Sprintf("%.1f KiB", float64(c.pgBytes)/n/1024), others(c.taken)})
		if len(c.failover) > 0 {
			var after []string
			for _, nd := range c.nodes {
				after = append(after, strconv.Itoa(nd.postKillSession))
			}
			kills = append(kills, []any{c.sessions, c.run, c.killed, c.killedSessions, dur(quantile(c.failover, 0.5)),
				dur(quantile(c.failover, 0.99)), dur(quantile(c.failover, 1)), strings.Join(after, "/"), c.maxConcurrent, c.replaced, others(c.failoverTaken)})
		}
	}
	table(w, fmt.Sprintf("Cluster: N SQLite sessions migrated into one Postgres, restored by %d nodes (static peers, mutual TLS); connected = logged in at the fake server", clusterNodes),
		"sessions,run,ok,migrate-store,all connected,hosted per node,RSS per node,peak RSS per node,PG conns max,PG rows/session,PG bytes/session,others", runs)
	table(w, "Cluster: kill -9 of the node hosting the most sessions, to each of its sessions logged in from a survivor (100 ms polls)",
		"sessions,run,killed,its sessions,p50,p99,max,hosted after,max at once/device,streams replaced,others", kills)
}
