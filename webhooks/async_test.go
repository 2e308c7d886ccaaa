package webhooks_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// slowCommits makes every commit that holds attempts' results take d
// first, as commits do while the disk is busy with the session stores.
func slowCommits(opts webhooks.Options, d time.Duration) webhooks.Options {
	return webhooks.WithCommitHook(opts, func(results int) error {
		if results > 0 {
			time.Sleep(d)
		}
		return nil
	})
}

// checkOnceInOrder fails unless rcv got each of want's ids exactly once,
// in want's order per session.
func checkOnceInOrder(t *testing.T, rcv *receiver, want map[string][]string) {
	t.Helper()
	for s, ids := range want {
		if got := rcv.idsOf(s); !slices.Equal(got, ids) {
			t.Errorf("%s received %d events %v, want %d once each in order", s, len(got), got, len(ids))
		}
	}
}

// While each commit of results takes 400 ms, deliveries go at the
// receiver's speed: 500 events of 50 sessions arrive in far less than the
// 500 × 400 ms / 32 workers (6.25 s) that waiting for each result's commit
// costs (50-90 ms here, ~1 s with -race on a loaded machine), each once
// and in order per session. Once they arrived, the admin
// API lists them delivered (it waits for the results recorded), and every
// result reaches the database.
func TestSlowCommitsDoNotHoldDeliveries(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		const sessionsN, each, commit = 50, 10, 400 * time.Millisecond
		rcv := newReceiver(t)
		o := open(t, slowCommits(testOptions(dir, rcv.srv.URL), commit))
		want := map[string][]string{}
		var evs []sessions.Event
		for i := range each {
			for s := range sessionsN {
				ev := event(fmt.Sprintf("s%02d", s), i)
				evs = append(evs, ev)
				want[ev.SenderID] = append(want[ev.SenderID], ev.ID)
			}
		}
		publish(t, o, evs...) // one commit, without results: not slowed
		start := time.Now()
		waitFor(t, 10*time.Second, "every event", func() (bool, string) {
			n := len(rcv.received())
			return n >= len(evs), fmt.Sprint(n)
		})
		took := time.Since(start)
		waiting := time.Duration(len(evs)) * commit / webhooks.DefaultConcurrency
		t.Logf("%d events delivered in %v with commits of results taking %v (waiting for each: %v)", len(evs), took, commit, waiting)
		if took > waiting/2 {
			t.Errorf("%d events took %v to arrive: deliveries wait for commits (%v if each waits)", len(evs), took, waiting)
		}
		checkOnceInOrder(t, rcv, want)
		if n := len(list(t, o, sessions.DeliveryPending)) + len(list(t, o, sessions.DeliveryFailed)); n != 0 {
			t.Errorf("%d deliveries listed pending or failed after every one arrived", n)
		}
		delivered := list(t, o, sessions.DeliveryDelivered)
		if len(delivered) != len(evs) {
			t.Fatalf("%d listed delivered, want %d", len(delivered), len(evs))
		}
		for _, d := range delivered {
			if d.Attempts != 1 || d.LastTryAt == nil {
				t.Errorf("delivered %+v, want one attempt", d)
			}
		}
		if q := o.Stats().Queued; q != 0 {
			t.Errorf("queue depth %d after every result was committed", q)
		}
		if got := rcv.hits.Load(); got != int64(len(evs)) {
			t.Errorf("the receiver got %d requests for %d events", got, len(evs))
		}
	})
}

// A failed attempt's next try holds while its result waits for a slow
// commit: the delivery is retried after its backoff, not before nor
// twice, and its attempts count every try.
func TestFailedAttemptKeepsBackoffBeforeCommit(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		const backoff, commit, failures = 100 * time.Millisecond, 300 * time.Millisecond, 3
		rcv := newReceiver(t)
		var mu sync.Mutex
		var hits []time.Time
		rcv.setAnswer(func(sessions.Event) int {
			mu.Lock()
			defer mu.Unlock()
			hits = append(hits, time.Now())
			if len(hits) <= failures {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		obs := &observer{}
		opts := slowCommits(testOptions(dir, rcv.srv.URL), commit)
		opts.Backoff, opts.Observer = fixedBackoff(backoff), obs
		o := open(t, opts)
		ev := event("alice", 1)
		publish(t, o, ev)
		waitFor(t, 10*time.Second, "the delivery", func() (bool, string) {
			return len(rcv.received()) == 1, ""
		})
		d := list(t, o, sessions.DeliveryDelivered)
		if len(d) != 1 || d[0].Attempts != failures+1 || d[0].LastError != "" {
			t.Fatalf("delivered %+v, want one after %d attempts", d, failures+1)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(hits) != failures+1 {
			t.Fatalf("%d requests, want %d", len(hits), failures+1)
		}
		for i := 1; i < len(hits); i++ {
			if gap := hits[i].Sub(hits[i-1]); gap < backoff {
				t.Errorf("attempt %d came %v after the failed one before it, within the backoff (%v)", i+1, gap, backoff)
			}
		}
		if got := obs.snapshot().results; got[webhooks.ResultFailed] != failures || got[webhooks.ResultDelivered] != 1 {
			t.Errorf("observed %v", got)
		}
	})
}

// A commit of results that fails (the disk is full, say) forgets them:
// those deliveries are sent again, with the same webhook-id, and recorded
// by a later commit. The later deliveries of the session whose results
// were committed meanwhile are not sent again, so the repeat comes after
// them: the first delivery of each event kept the session's order.
func TestFailedCommitOfResultsRedelivers(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		var failed atomic.Bool
		o := open(t, webhooks.WithCommitHook(testOptions(dir, rcv.srv.URL), func(results int) error {
			if results > 0 && failed.CompareAndSwap(false, true) {
				return errors.New("disk full (test)")
			}
			return nil
		}))
		evs := []sessions.Event{event("alice", 1), event("alice", 2), event("alice", 3)}
		publish(t, o, evs...)
		waitFor(t, 10*time.Second, "every event recorded delivered", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryDelivered)) == len(evs), fmt.Sprint(rcv.idsOf("alice"))
		})
		got := rcv.idsOf("alice")
		if !failed.Load() || len(got) <= len(evs) {
			t.Fatalf("received %v, failed commit %v: want a redelivery after the failed commit", got, failed.Load())
		}
		if want := []string{evs[0].ID, evs[1].ID, evs[2].ID}; !slices.Equal(got[:len(evs)], want) {
			t.Errorf("first deliveries %v, want %v", got[:len(evs)], want)
		}
		for _, r := range rcv.received() {
			if r.WebhookID != r.Event.ID {
				t.Errorf("webhook-id %s for event %s", r.WebhookID, r.Event.ID)
			}
		}
	})
}

// The child process of TestKillBeforeResultsCommit: it delivers every
// event of the outbox at path to url, but no commit of results ever
// ends, until it is killed. It prints "ready" once its events are
// committed.
func deliverUntilKilled(path, url string) {
	opts := testOptions(filepath.Dir(path), url)
	opts.Path = path
	block := make(chan struct{})
	o, err := webhooks.Open(webhooks.WithCommitHook(opts, func(results int) error {
		if results > 0 {
			<-block // held until the kill
		}
		return nil
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var evs []sessions.Event
	for i := range killEach {
		for s := range killSessions {
			evs = append(evs, event(fmt.Sprintf("k%d", s), i))
		}
	}
	done := make(chan error, 1)
	o.Publish(evs, func(err error) { done <- err })
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, _ = os.Stdout.WriteString("ready\n")
	select {}
}

const killSessions, killEach = 4, 10

// kill -9 after the receiver answered 2xx but before those results were
// committed: the next start delivers each event again, with the same
// webhook-id, in order per session; nothing is lost.
func TestKillBeforeResultsCommit(t *testing.T) {
	rcv := newReceiver(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OUTBOX_CHILD_PATH="+path, "OUTBOX_CHILD_URL="+rcv.srv.URL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}
	defer kill()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("the child said %q", line)
	}
	const total = killSessions * killEach
	waitFor(t, 10*time.Second, "every event at the receiver from the child", func() (bool, string) {
		n := len(rcv.received())
		return n >= total, fmt.Sprint(n)
	})
	first := rcv.received()
	kill()

	// None of those results reached the database.
	var undelivered int
	db, _ := dbOf(t, path)
	if err := db.QueryRow(`SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts = 0`).Scan(&undelivered); err != nil {
		t.Fatal(err)
	}
	if undelivered != total {
		t.Fatalf("%d of %d deliveries still pending after the kill: the test did not kill before the commits", undelivered, total)
	}

	o := open(t, testOptions(filepath.Dir(path), rcv.srv.URL))
	waitFor(t, 10*time.Second, "every event again after the restart", func() (bool, string) {
		return len(rcv.received()) == 2*total && o.Stats().Queued == 0, fmt.Sprint(len(rcv.received()))
	})
	again := rcv.received()[total:]
	if len(first) != total {
		t.Fatalf("the child's run delivered %d events, want %d once each", len(first), total)
	}
	// The same events, each with its first webhook-id, in the same order
	// per session.
	perSession := func(rs []received) map[string][]string {
		m := map[string][]string{}
		for _, r := range rs {
			if r.WebhookID != r.Event.ID {
				t.Errorf("webhook-id %s for event %s", r.WebhookID, r.Event.ID)
			}
			m[r.Event.SenderID] = append(m[r.Event.SenderID], r.WebhookID)
		}
		return m
	}
	before, after := perSession(first), perSession(again)
	for s := range killSessions {
		sender := fmt.Sprintf("k%d", s)
		if len(before[sender]) != killEach || !slices.Equal(before[sender], after[sender]) {
			t.Errorf("%s: before the kill %v, after the restart %v", sender, before[sender], after[sender])
		}
	}
	if n := len(list(t, o, sessions.DeliveryDelivered)); n != total {
		t.Errorf("%d delivered after the restart, want %d", n, total)
	}
}
