package webhooks_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// dbOf is a connection of its own to the outbox at path (the SQLite
// file, read-only, closed with the test; or the test's Postgres database),
// and the events table's name there.
func dbOf(t *testing.T, path string) (*sql.DB, string) {
	t.Helper()
	if db, ok := postgresDirs.Load(filepath.Dir(path)); ok {
		return db.(*sql.DB), "ws_events"
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db, "events"
}

// countEvents reads how many events the outbox at path holds.
func countEvents(t *testing.T, path string) int {
	t.Helper()
	var n int
	db, events := dbOf(t, path)
	if err := db.QueryRow(`SELECT count(*) FROM ` + events).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Many concurrent publishers: their events are written in a few
// transactions, each publisher hears only once its events are readable
// from another connection, and a reopened outbox holds them all.
func TestGroupCommit(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		opts := testOptions(dir) // no endpoint: nothing is delivered
		o := open(t, opts)
		reader, events := dbOf(t, opts.Path)
		byID := `SELECT count(*) FROM ` + events + ` WHERE id = ?`
		if events != "events" {
			byID = `SELECT count(*) FROM ` + events + ` WHERE id = $1`
		}

		const publishers, each = 50, 20
		var wg sync.WaitGroup
		errs := make(chan error, publishers*each)
		for p := range publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					ev := event(fmt.Sprintf("s%02d", p), i)
					done := make(chan error, 1)
					o.Publish([]sessions.Event{ev}, func(err error) {
						if err == nil {
							// Readable elsewhere, so committed, before done.
							var n int
							if qerr := reader.QueryRow(byID, ev.ID).Scan(&n); qerr != nil || n != 1 {
								err = fmt.Errorf("done before %s was readable: %d rows, %v", ev.ID, n, qerr)
							}
						}
						done <- err
					})
					errs <- <-done
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		st := o.Stats()
		t.Logf("%d events in %d transactions", st.Events, st.Commits)
		if st.Events != publishers*each {
			t.Errorf("committed %d events, want %d", st.Events, publishers*each)
		}
		if st.Commits > publishers*each/2 {
			t.Errorf("%d transactions for %d events: no group commit", st.Commits, st.Events)
		}
		closeOutbox(t, o)
		if n := countEvents(t, opts.Path); n != publishers*each {
			t.Errorf("reopened outbox holds %d events, want %d", n, publishers*each)
		}
		o2 := open(t, opts)
		publish(t, o2, event("s00", 0)) // a duplicate across a restart
		closeOutbox(t, o2)
		if n := countEvents(t, opts.Path); n != publishers*each {
			t.Errorf("after a duplicate: %d events, want %d", n, publishers*each)
		}
	})
}

// An event id the outbox holds is dropped (reported committed): in a
// later batch and within one batch. Each reaches the receiver once.
func TestDuplicateIDs(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		o := open(t, testOptions(dir, rcv.srv.URL))
		a, b := event("alice", 1), event("alice", 2)
		publish(t, o, a)
		publish(t, o, a, b, b)
		waitFor(t, 10*time.Second, "two deliveries", func() (bool, string) {
			return len(rcv.received()) >= 2 && o.Stats().Queued == 0, fmt.Sprint(rcv.received())
		})
		if got := rcv.idsOf("alice"); !slices.Equal(got, []string{a.ID, b.ID}) {
			t.Errorf("received %v, want %v once each", got, []string{a.ID, b.ID})
		}
		for _, g := range rcv.received() {
			if g.WebhookID != g.Event.ID {
				t.Errorf("webhook-id %s for event %s", g.WebhookID, g.Event.ID)
			}
		}
	})
}

// An event without an id (or type, or session), or whose data is not
// JSON, is refused with its whole batch; nothing of it is kept.
func TestPublishRefusesBadEvents(t *testing.T) {
	opts := testOptions(t.TempDir())
	o := open(t, opts)
	noID := event("a", 1)
	noID.ID = ""
	badData := event("a", 2)
	badData.Data = []byte("{not json")
	for _, bad := range []sessions.Event{noID, badData} {
		done := make(chan error, 1)
		o.Publish([]sessions.Event{event("a", 3), bad}, func(err error) { done <- err })
		if err := <-done; err == nil {
			t.Errorf("publish of %+v: no error", bad)
		}
	}
	closeOutbox(t, o)
	if n := countEvents(t, opts.Path); n != 0 {
		t.Errorf("%d events kept from refused batches", n)
	}
}

// After Close, Publish reports ErrClosed (a 503 through the API).
func TestPublishAfterClose(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		o, err := openStore(testOptions(dir))
		if err != nil {
			t.Fatal(err)
		}
		closeOutbox(t, o)
		var got error
		o.Publish([]sessions.Event{event("a", 1)}, func(err error) { got = err })
		if !errors.Is(got, webhooks.ErrClosed) || !errors.Is(got, sessions.ErrShuttingDown) {
			t.Errorf("publish after close: %v", got)
		}
	})
}

// Events published before Close are committed by Close: none is lost.
func TestCloseCommitsWhatWasPublished(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		opts := testOptions(dir)
		o, err := openStore(opts)
		if err != nil {
			t.Fatal(err)
		}
		const n = 500
		results := make(chan error, n)
		for i := range n {
			o.Publish([]sessions.Event{event("a", i)}, func(err error) { results <- err })
		}
		closeOutbox(t, o)
		for range n {
			if err := <-results; err != nil {
				t.Fatalf("an event published before Close: %v", err)
			}
		}
		if got := countEvents(t, opts.Path); got != n {
			t.Errorf("%d events kept, want %d", got, n)
		}
	})
}

// Delivered deliveries are pruned after WEBHOOK_KEEP, with their events;
// dead and pending ones are not.
func TestPrune(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		var clk clock
		opts := testOptions(dir, rcv.srv.URL)
		opts.Now, opts.Keep, opts.RetryFor = clk.Now, 24*time.Hour, time.Hour
		o := open(t, opts)
		rcv.setAnswer(func(ev sessions.Event) int {
			if ev.ID == event("a", 2).ID {
				return 500
			}
			return 200
		})
		publish(t, o, event("a", 1))
		waitFor(t, 10*time.Second, "delivered", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryDelivered)) == 1, ""
		})
		publish(t, o, event("a", 2))
		waitFor(t, 10*time.Second, "a failed attempt", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryFailed)) == 1, ""
		})
		ctx := context.Background()
		if n, err := o.Prune(ctx); err != nil || n != 0 {
			t.Errorf("prune before WEBHOOK_KEEP: %d, %v", n, err)
		}
		clk.Advance(25 * time.Hour)
		if n, err := o.Prune(ctx); err != nil || n != 1 {
			t.Errorf("prune after WEBHOOK_KEEP: %d, %v; want 1 removed", n, err)
		}
		if got := list(t, o, sessions.DeliveryDelivered); len(got) != 0 {
			t.Errorf("delivered after pruning: %v", got)
		}
		if n := countEvents(t, opts.Path); n != 1 {
			t.Errorf("%d events after pruning, want the undelivered one only", n)
		}
		// The undelivered one is still there, in its state.
		waitFor(t, 10*time.Second, "the undelivered delivery to be listed", func() (bool, string) {
			n := len(list(t, o, sessions.DeliveryFailed)) + len(list(t, o, sessions.DeliveryDead)) + len(list(t, o, sessions.DeliveryPending))
			return n == 1, fmt.Sprint(n)
		})
	})
}

// A bad path is a clear error at Open.
func TestOpenErrors(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.Path = filepath.Join(t.TempDir(), "missing", "dir", "outbox.db")
	if _, err := webhooks.Open(opts); err == nil {
		t.Error("opening an outbox in a missing directory succeeded")
	}
	opts = testOptions(t.TempDir(), "ftp://example.com/")
	if _, err := webhooks.Open(opts); err == nil {
		t.Error("an ftp endpoint was accepted")
	}
	opts = testOptions(t.TempDir(), "https://example.com/", "https://example.com/")
	if _, err := webhooks.Open(opts); err == nil {
		t.Error("an endpoint listed twice was accepted")
	}
	opts = testOptions(t.TempDir(), "https://example.com/")
	opts.Secret = "nope"
	if _, err := webhooks.Open(opts); err == nil {
		t.Error("a bad secret was accepted")
	}
}

// The outbox holds message text: its files are the owner's alone.
func TestOutboxFilesArePrivate(t *testing.T) {
	opts := testOptions(t.TempDir())
	o := open(t, opts)
	publish(t, o, event("a", 1))
	for _, f := range []string{opts.Path, opts.Path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
}
