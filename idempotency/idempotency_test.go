package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/idempotency"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func open(t testing.TB, path string, now func() time.Time) *idempotency.Store {
	t.Helper()
	s, err := idempotency.Open(path, idempotency.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachStore runs test on each kind of store: a SQLite file, and a real
// Postgres database migrated by pgstore. open opens the test's store (again
// after a Close: the same database).
func eachStore(t *testing.T, test func(t *testing.T, open func(now func() time.Time) *idempotency.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), idempotency.File)
		test(t, func(now func() time.Time) *idempotency.Store { return open(t, path, now) })
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("database mode: %v %v, want 0600", fi.Mode(), err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		db, _ := pgtest.Start(t).OpenMigrated(t)
		test(t, func(now func() time.Time) *idempotency.Store {
			s, err := idempotency.OpenPostgres(db, idempotency.Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
		if err := db.PingContext(context.Background()); err != nil {
			t.Errorf("closing the store closed the shared pool: %v", err)
		}
	})
}

// ids makes message ids id-1, id-2, ... and counts them.
type ids struct{ n atomic.Int64 }

func (i *ids) next() string { return fmt.Sprintf("id-%d", i.n.Add(1)) }

func TestAnswerIsKeptAcrossAReopen(t *testing.T) {
	eachStore(t, testAnswerIsKeptAcrossAReopen)
}

func testAnswerIsKeptAcrossAReopen(t *testing.T, open func(now func() time.Time) *idempotency.Store) {
	ctx := context.Background()
	var gen ids
	req := sessions.SendRequest{To: "+4915112345678", Text: "hello", IdempotencyKey: "order-1"}

	s := open(nil)
	c, err := s.Begin(ctx, "alice", req, gen.next)
	if err != nil || c.Answer != nil || c.MessageID != "id-1" {
		t.Fatalf("first Begin = %+v, %v", c, err)
	}
	// The same key while the first send runs.
	if _, err := s.Begin(ctx, "alice", req, gen.next); !errors.Is(err, sessions.ErrKeyInProgress) {
		t.Fatalf("concurrent Begin: %v, want ErrKeyInProgress", err)
	}
	// Another session's key of the same name is its own.
	if c, err := s.Begin(ctx, "bob", req, gen.next); err != nil || c.MessageID != "id-2" {
		t.Fatalf("another session: %+v, %v", c, err)
	}
	sent := sessions.SentMessage{ID: "id-1", Timestamp: time.Date(2026, 11, 30, 6, 0, 1, 0, time.UTC)}
	if err := s.Finish(ctx, "alice", req.IdempotencyKey, sent); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(nil)
	c, err = s.Begin(ctx, "alice", req, gen.next)
	if err != nil || c.Answer == nil || *c.Answer != sent {
		t.Fatalf("Begin after a reopen = %+v, %v; want the answer %+v", c, err, sent)
	}
	// A recorded answer does not hold the key.
	if _, err := s.Begin(ctx, "alice", req, gen.next); err != nil {
		t.Fatalf("second retry: %v", err)
	}
	other := req
	other.Text = "hello!"
	if _, err := s.Begin(ctx, "alice", other, gen.next); !errors.Is(err, sessions.ErrKeyReused) {
		t.Fatalf("another request with the key: %v, want ErrKeyReused", err)
	}
	// The key is not held by the refused request either.
	if _, err := s.Begin(ctx, "alice", req, gen.next); err != nil {
		t.Fatalf("retry after a refused one: %v", err)
	}
	// bob's send never finished (a crash): its retry after the reopen
	// sends again with the same message id.
	c, err = s.Begin(ctx, "bob", req, gen.next)
	if err != nil || c.Answer != nil || c.MessageID != "id-2" {
		t.Fatalf("retry of an unfinished send = %+v, %v; want id-2 to send again", c, err)
	}
	s.Release("bob", req.IdempotencyKey)
	if c, err := s.Begin(ctx, "bob", req, gen.next); err != nil || c.MessageID != "id-2" {
		t.Fatalf("retry after a failed send = %+v, %v", c, err)
	}
	if n := gen.n.Load(); n != 2 {
		t.Errorf("%d message ids made, want 2", n)
	}
}

func TestEntriesArePrunedAfterADay(t *testing.T) {
	eachStore(t, testEntriesArePrunedAfterADay)
}

func testEntriesArePrunedAfterADay(t *testing.T, open func(now func() time.Time) *idempotency.Store) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	var gen ids
	s := open(clk.Now)
	req := sessions.SendRequest{To: "+4915112345678", Text: "hi", IdempotencyKey: "k"}
	if _, err := s.Begin(ctx, "alice", req, gen.next); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "alice", "k", sessions.SentMessage{ID: "id-1", Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	clk.add(23 * time.Hour)
	if n, err := s.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("prune after 23 h: %d, %v; want nothing pruned", n, err)
	}
	clk.add(2 * time.Hour)
	if n, err := s.Prune(ctx); err != nil || n != 1 {
		t.Fatalf("prune after 25 h: %d, %v; want 1", n, err)
	}
	if c, err := s.Begin(ctx, "alice", req, gen.next); err != nil || c.Answer != nil || c.MessageID != "id-2" {
		t.Fatalf("a pruned key = %+v, %v; want a new send", c, err)
	}
}

func TestKeys(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), idempotency.File), nil)
	for _, key := range []string{"", strings.Repeat("k", 256), "tab\there", "é", "new\nline"} {
		req := sessions.SendRequest{To: "+4915112345678", Text: "hi", IdempotencyKey: key}
		if _, err := s.Begin(context.Background(), "alice", req, func() string { return "x" }); !errors.Is(err, sessions.ErrInvalid) {
			t.Errorf("key %q: %v, want ErrInvalid", key, err)
		}
	}
	for _, key := range []string{"k", strings.Repeat("k", 255), "a b ~!{}"} {
		if err := idempotency.CheckKey(key); err != nil {
			t.Errorf("key %q: %v", key, err)
		}
	}
}

// Many sends at once commit in a few transactions, and each gets its own
// answer.
func TestConcurrentSendsCommitTogether(t *testing.T) {
	eachStore(t, testConcurrentSendsCommitTogether)
}

func testConcurrentSendsCommitTogether(t *testing.T, open func(now func() time.Time) *idempotency.Store) {
	s := open(nil)
	ctx := context.Background()
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			req := sessions.SendRequest{To: "+4915112345678", Text: "hi", IdempotencyKey: key}
			c, err := s.Begin(ctx, "alice", req, func() string { return "m" + key })
			if err == nil && c.MessageID != "m"+key {
				err = fmt.Errorf("%s: message id %s", key, c.MessageID)
			}
			if err == nil {
				err = s.Finish(ctx, "alice", key, sessions.SentMessage{ID: c.MessageID, Timestamp: time.Now()})
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d sends recorded and answered in %s", n, time.Since(start))
}

// BenchmarkAtTheSendRate paces Begin+Finish at the messaging bench's send
// rate (500/s, 1,000 of them over 100 sessions) and reports their latency:
// every write is synced, in shared batches, so recording a send and its
// answer should add little to a send's latency. Figures, not a pass/fail
// bound: go test -run '^$' -bench AtTheSendRate ./idempotency
func BenchmarkAtTheSendRate(b *testing.B) {
	const rate, total = 500, 1000
	for range b.N {
		s := open(b, filepath.Join(b.TempDir(), idempotency.File), nil)
		ctx := context.Background()
		lat := make([]time.Duration, total)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate)
		for i := range total {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				key := fmt.Sprintf("k%d", i)
				req := sessions.SendRequest{To: "+4915112345678", Text: "hi", IdempotencyKey: key}
				c, err := s.Begin(ctx, fmt.Sprintf("s%d", i%100), req, func() string { return "m" + key })
				if err == nil {
					err = s.Finish(ctx, fmt.Sprintf("s%d", i%100), key, sessions.SentMessage{ID: c.MessageID, Timestamp: time.Now()})
				}
				if err != nil {
					b.Error(err)
				}
				lat[i] = time.Since(start)
			}()
		}
		wg.Wait()
		tick.Stop()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[total/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[total*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(lat[total-1].Microseconds()), "max-µs")
	}
}
