package webhooks_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// BenchmarkPublishRate publishes at a steady rate (from 100 sessions,
// with synchronous(FULL) on a real file) for 2 s and reports the commit
// latency, from Publish to done, and the transactions per second:
//
//	go test -run '^$' -bench PublishRate -benchtime 1x ./webhooks/
func BenchmarkPublishRate(b *testing.B) {
	for _, rate := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("%d_per_s", rate), func(b *testing.B) {
			for range b.N {
				publishAtRate(b, rate, 2*time.Second)
			}
		})
	}
}

func publishAtRate(b *testing.B, rate int, span time.Duration) {
	o, err := webhooks.Open(testOptions(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close(b.Context()) //nolint:errcheck
	const sessionsN = 100
	total := rate * int(span/time.Second)
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	wg.Add(total)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		ev := event(fmt.Sprintf("s%03d", i%sessionsN), i)
		t0 := time.Now()
		o.Publish([]sessions.Event{ev}, func(err error) {
			if err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(t0)
			wg.Done()
		})
	}
	wg.Wait()
	took := time.Since(start)
	st := o.Stats()
	slices.Sort(lat)
	b.ReportMetric(float64(total)/took.Seconds(), "events/s")
	b.ReportMetric(float64(st.Commits)/took.Seconds(), "commits/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkDeliveryRate publishes 1,000 events/s across 1,000 sessions for
// 3 s to a local receiver (httptest, verifying every signature) and
// reports the time from Publish to the receiver's handler, p50 and p99,
// the deepest queue seen, and the process's CPU time per event (outbox,
// receiver and publisher together): with commits as fast as this disk makes
// them, and with every commit made to take 300 ms more (as they did in
// the messaging bench while the session stores kept the disk busy):
//
//	go test -run '^$' -bench DeliveryRate -benchtime 1x ./webhooks/
func BenchmarkDeliveryRate(b *testing.B) {
	for _, slow := range []time.Duration{0, 300 * time.Millisecond} {
		name := "fast_commits"
		if slow > 0 {
			name = fmt.Sprintf("commits_%dms", slow.Milliseconds())
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				deliverAtRate(b, 1000, 1000, 3*time.Second, slow)
			}
		})
	}
}

func deliverAtRate(b *testing.B, rate, sessionsN int, span, slow time.Duration) {
	total := rate * int(span/time.Second)
	var mu sync.Mutex
	sent := make(map[string]time.Time, total)
	var lat []time.Duration
	got := make(chan struct{}, total)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		if t0, ok := sent[id]; ok {
			lat = append(lat, time.Since(t0))
			delete(sent, id)
			got <- struct{}{}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	obs := &observer{}
	opts := testOptions(b.TempDir(), rcv.URL)
	opts.Observer = obs
	if slow > 0 {
		opts = webhooks.WithCommitHook(opts, func(int) error { time.Sleep(slow); return nil })
	}
	o, err := webhooks.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close(b.Context()) //nolint:errcheck
	cpu0 := cpuTime()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		ev := event(fmt.Sprintf("s%04d", i%sessionsN), i)
		mu.Lock()
		sent[ev.ID] = time.Now()
		mu.Unlock()
		o.Publish([]sessions.Event{ev}, nil)
	}
	deadline := time.After(time.Minute)
	for range total {
		select {
		case <-got:
		case <-deadline:
			b.Fatalf("not every event arrived within a minute")
		}
	}
	cpu := cpuTime() - cpu0
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(obs.snapshot().maxDepth), "max-queue")
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/event")
}

// cpuTime is the CPU time (user and system) this process used so far:
// the outbox, the receiver and the publisher together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
