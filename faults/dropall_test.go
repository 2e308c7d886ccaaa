package faults_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
)

// TestMassDisconnectReconnectsUnderTheRate: the server drops every
// session at once (fakeserver's DropAll); the sessions reconnect by
// themselves, never faster than CONNECT_RATE allows after a burst of
// CONNECT_BURST, and all come back connected without pairing, nothing
// lost.
//
// The attempts are timed where WhatsApp would see them: the service dials
// the fake server through a TCP proxy that records when each connection
// opens (dialRecorder). Over any stretch of time dt, a token bucket lets
// through at most burst + rate*dt attempts; the dials may bunch a little
// more than the tokens, as goroutines are scheduled unevenly on a busy
// machine, hence a slack of rate*jitter, where jitter is 250 ms or twice
// the worst scheduling lag this process saw while the sessions
// reconnected, at most 2 s (a 10 ms ticker's lateness: on a loaded CI machine the
// service's goroutines are delayed alike). Unpaced, a thousand sessions
// would dial within a few tens of milliseconds, hundreds over that
// allowance.
//
// RESTORE_CONCURRENCY is set high enough never to be the bottleneck: with
// every slot busy, the pacer hands tokens to sessions that then wait for
// a slot and start together (TestPacerStartsStayUnderTheRateWhileSlotsAreBusy),
// and this test is about the rate of reconnects.
func TestMassDisconnectReconnectsUnderTheRate(t *testing.T) {
	n, rate, burst := *dropSessions, *connectRate, *connectBurst
	f := newFake(t)
	proxy := newDialRecorder(t, f.Addr())
	root := t.TempDir()
	began := time.Now()
	ids := seed(t, root, n, seedOptions{})
	t.Logf("seeded %d stores in %v", n, time.Since(began))
	b := takeBaseline(t, f, root, ids)

	svc := startService(t, f, root, "FAKE_WA_ADDR="+proxy.Addr(),
		fmt.Sprintf("CONNECT_RATE=%v", rate), fmt.Sprintf("CONNECT_BURST=%d", burst),
		fmt.Sprintf("RESTORE_CONCURRENCY=%d", n), "BACKOFF_MIN=50ms", "BACKOFF_MAX=1s", "LOG_LEVEL=debug")
	began = time.Now()
	svc.WaitConnected(n, 120*time.Second)
	t.Logf("%d sessions restored in %v", n, time.Since(began))
	// The restore's dials are paced too, but not checked here: each
	// session takes its token before opening its store, so on a busy
	// machine they bunch (TestRestoreDialsStayUnderTheRateWhenStoresOpenSlowly).
	logRate(t, "restore dials", proxy.dials.since(0), rate)

	dialMark, loginMark := proxy.dials.count(), f.sockets.logins.count()
	lag := watchSchedulingLag()
	dropAt := time.Now()
	dropped, err := f.DropAll(context.Background())
	if err != nil || dropped != n {
		t.Fatalf("DropAll = %d, %v; want %d", dropped, err, n)
	}
	e2e.WaitFor(t, 120*time.Second, "every session to reconnect", func() (bool, string) {
		fl := svc.Fleet()
		back := 0
		for _, st := range fl.Sessions {
			if st.State == "connected" && st.Reconnects >= 1 {
				back++
			}
		}
		return back == n, fmt.Sprint(back, " back; ", fl.Counts)
	}, svc.Logs)
	redials, logins := proxy.dials.since(dialMark), f.sockets.logins.since(loginMark)
	// Capped so that an unpaced burst (all n at once) still fails.
	jitter := min(2*time.Second, max(250*time.Millisecond, 2*lag()))
	allowance := float64(burst) + rate*jitter.Seconds()
	t.Logf("scheduling slack %v", jitter.Round(time.Millisecond))
	t.Logf("%d sessions redialled within %v of the drop (%s)", n,
		redials[len(redials)-1].Sub(dropAt).Round(time.Millisecond), perSecond(redials, dropAt))
	if len(logins) != n {
		t.Errorf("%d logins after the drop, want one per session (%d)", len(logins), n)
	}
	if len(redials) < n {
		t.Errorf("%d dials after the drop for %d sessions", len(redials), n)
	}
	checkRate(t, "reconnect dials", redials, rate, allowance)
	logRate(t, "reconnect logins", logins, rate)
	assertNoDoubleLogin(t, f, svc.Logs)
	b.assertNothingLost(t, svc, f, 0)
}

// checkRate fails the test if, over any stretch of the sorted times ts,
// more than allowance + rate*dt of them fall within dt.
func checkRate(t *testing.T, what string, ts []time.Time, rate, allowance float64) {
	t.Helper()
	worst, n, dt := burstiest(ts, rate)
	t.Logf("%s: at worst %d within %v (%.1f above the rate; %.1f allowed)", what, n, dt.Round(time.Millisecond), worst, allowance)
	if worst > allowance {
		t.Errorf("%s: %d within %v exceed the rate %v/s plus %.0f", what, n, dt, rate, allowance)
	}
}

// logRate shows how far the sorted times ts rise above rate.
func logRate(t *testing.T, what string, ts []time.Time, rate float64) {
	t.Helper()
	worst, n, dt := burstiest(ts, rate)
	t.Logf("%s: at worst %d within %v (%.1f above the rate)", what, n, dt.Round(time.Millisecond), worst)
}

// burstiest finds the stretch of the sorted times ts where most of them
// exceed rate: it returns by how many, how many fall in it and how long
// it is.
func burstiest(ts []time.Time, rate float64) (excess float64, n int, dt time.Duration) {
	for i := range ts {
		for j := i; j < len(ts); j++ {
			d := ts[j].Sub(ts[i])
			if e := float64(j-i+1) - rate*d.Seconds(); e > excess {
				excess, n, dt = e, j-i+1, d
			}
		}
	}
	return excess, n, dt
}

// perSecond is how many of ts fall in each second after start.
func perSecond(ts []time.Time, start time.Time) string {
	var counts []int
	for _, x := range ts {
		s := int(x.Sub(start) / time.Second)
		for len(counts) <= s {
			counts = append(counts, 0)
		}
		counts[s]++
	}
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprint(c)
	}
	return "per second: " + strings.Join(parts, " ")
}

// watchSchedulingLag measures, until the returned function is called, how
// late a 10 ms ticker fires at worst in this process: the machine's
// scheduling delay. The function stops the watch and returns the worst.
func watchSchedulingLag() func() time.Duration {
	const tick = 10 * time.Millisecond
	stop, done := make(chan struct{}), make(chan time.Duration)
	go func() {
		var worst time.Duration
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				done <- worst
				return
			case now := <-t.C:
				worst = max(worst, time.Since(last)-tick)
				last = now
			}
		}
	}()
	return func() time.Duration {
		close(stop)
		return <-done
	}
}
