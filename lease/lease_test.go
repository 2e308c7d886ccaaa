package lease_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Run's renewal loop must end with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is one migrated database, shared by the test's keepers.
type env struct {
	srv *pgtest.Server
	url string
	db  *sql.DB
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := pgtest.Start(t)
	db, url := srv.OpenMigrated(t)
	return &env{srv: srv, url: url, db: db}
}

func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := pgstore.Open(context.Background(), url, pgstore.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// addSessions creates ws_sessions rows s0..s{n-1}.
func (e *env) addSessions(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i)
	}
	if _, err := e.db.Exec(`INSERT INTO ws_sessions (sender_id) SELECT unnest($1::text[])`, ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

// lease reads id's lease row.
func (e *env) lease(t *testing.T, id string) (owner sql.NullString, token int64, expires time.Time) {
	t.Helper()
	err := e.db.QueryRow(`SELECT owner, token, expires_at FROM ws_leases WHERE sender_id = $1`, id).
		Scan(&owner, &token, &expires)
	if err != nil {
		t.Fatal(err)
	}
	return owner, token, expires
}

// run starts k.Run until the test ends.
func run(t *testing.T, k *lease.Keeper) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = k.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ownedElsewhere(t *testing.T, err error, node string) *lease.OwnedElsewhereError {
	t.Helper()
	var oe *lease.OwnedElsewhereError
	if !errors.As(err, &oe) || !errors.Is(err, sessions.ErrOwnedElsewhere) {
		t.Fatalf("acquire: %v, want owned elsewhere", err)
	}
	if oe.Node != node {
		t.Fatalf("holder %q, want %q", oe.Node, node)
	}
	return oe
}

// TestRaceOneWinnerTokensGrow: keepers racing for one session leave
// exactly one owner, and the fencing token grows at every new owner.
func TestRaceOneWinnerTokensGrow(t *testing.T) {
	e := newEnv(t)
	id := e.addSessions(t, 1)[0]
	ctx := context.Background()
	const ttl = time.Second
	keepers := make([]*lease.Keeper, 4)
	for i := range keepers {
		keepers[i] = lease.New(open(t, e.url), lease.Options{Node: fmt.Sprintf("n%d", i), Address: "a", TTL: ttl})
	}
	var lastToken int64
	for round := range 3 {
		var wins atomic.Int32
		var winner atomic.Int32
		var wg sync.WaitGroup
		for i, k := range keepers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := k.Acquire(ctx, id)
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(int32(i))
				case errors.Is(err, sessions.ErrOwnedElsewhere):
				default:
					t.Errorf("acquire: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins.Load())
		}
		w := keepers[winner.Load()]
		owner, token, _ := e.lease(t, id)
		if owner.String != w.Node() || token <= lastToken {
			t.Fatalf("round %d: owner %v token %d (last %d), want %s and a larger token", round, owner, token, lastToken, w.Node())
		}
		if got, _ := w.Token(id); got != token {
			t.Fatalf("keeper's token %d, row's %d", got, token)
		}
		// Acquiring again what one holds keeps the token.
		if err := w.Acquire(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, again, _ := e.lease(t, id); again != token {
			t.Fatalf("re-acquire by the owner moved the token %d -> %d", token, again)
		}
		lastToken = token
		if err := w.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExpiryHandsOver: a lease nobody renews is another node's after its
// expiry, not before, with a larger token; the refusal names the holder.
func TestExpiryHandsOver(t *testing.T) {
	e := newEnv(t)
	id := e.addSessions(t, 1)[0]
	ctx := context.Background()
	const ttl = 1500 * time.Millisecond
	a := lease.New(e.db, lease.Options{Node: "a", Address: "a:1", TTL: ttl})
	b := lease.New(e.db, lease.Options{Node: "b", Address: "b:1", TTL: ttl})
	if err := a.SetLeaving(ctx); err != nil { // a ws_nodes row for a's address
		t.Fatal(err)
	}
	if err := a.Acquire(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, tokenA, expires := e.lease(t, id)
	oe := ownedElsewhere(t, b.Acquire(ctx, id), "a")
	if oe.Address != "a:1" || !oe.Expires.Equal(expires) || oe.Live {
		t.Fatalf("holder %+v, want address a:1, expiry %v, not live (leaving)", oe.Holder, expires)
	}
	var took time.Time
	eventually(t, 5*time.Second, "b takes the expired lease", func() bool {
		err := b.Acquire(ctx, id)
		if err == nil {
			took = time.Now()
			return true
		}
		ownedElsewhere(t, err, "a")
		return false
	})
	if took.Before(expires) {
		t.Fatalf("b took the lease at %v, before its expiry %v", took, expires)
	}
	owner, tokenB, _ := e.lease(t, id)
	if owner.String != "b" || tokenB != tokenA+1 {
		t.Fatalf("owner %v token %d, want b and %d", owner, tokenB, tokenA+1)
	}
	// a's release of a lease b holds leaves it alone.
	if err := a.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if owner, _, _ := e.lease(t, id); owner.String != "b" {
		t.Fatalf("a's release freed b's lease: owner %v", owner)
	}
}

// TestRenewalKeepsAndReleaseFrees: a running keeper keeps its leases past
// many TTLs and shows its node eligible; a release frees a lease at once.
func TestRenewalKeepsAndReleaseFrees(t *testing.T) {
	e := newEnv(t)
	ids := e.addSessions(t, 3)
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	var lost atomic.Int32
	a := lease.New(e.db, lease.Options{Node: "a", Address: "a:1", TTL: ttl, OnLost: func(ids []string) { lost.Add(int32(len(ids))) }})
	b := lease.New(e.db, lease.Options{Node: "b", Address: "b:1", TTL: ttl})
	for _, id := range ids {
		if err := a.Acquire(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	run(t, a)
	eventually(t, 5*time.Second, "a eligible", func() bool {
		nodes, err := a.Eligible(ctx)
		return err == nil && len(nodes) == 1 && nodes[0] == lease.Node{Name: "a", Address: "a:1"}
	})
	// The refusal's words stay the same across a's renewals: a waiting
	// session's status shows them.
	words := b.Acquire(ctx, ids[0]).Error()
	end := time.Now().Add(4 * ttl)
	for time.Now().Before(end) {
		for _, id := range ids {
			err := b.Acquire(ctx, id)
			ownedElsewhere(t, err, "a")
			if id == ids[0] && err.Error() != words {
				t.Fatalf("refusal %q became %q", words, err.Error())
			}
		}
		time.Sleep(ttl / 4)
	}
	if lost.Load() != 0 || len(a.Held()) != 3 {
		t.Fatalf("lost %d, held %v; want all three held", lost.Load(), a.Held())
	}
	hs, err := b.Holders(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if h := hs[id]; h.Node != "a" || !h.Live {
			t.Fatalf("holder of %s: %+v, want a, live", id, h)
		}
	}
	if err := a.Release(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx, ids[0]); err != nil {
		t.Fatalf("acquire a released lease: %v", err)
	}
	if err := a.SetLeaving(ctx); err != nil {
		t.Fatal(err)
	}
	if nodes, err := a.Eligible(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("eligible %v, %v; want none once a is leaving", nodes, err)
	}
	if lost.Load() != 0 {
		t.Fatalf("release counted as lost")
	}
}

// TestLeavingStaysThenClears: a leaving node's renewals keep it leaving
// (not eligible); the same node started again (a new Keeper) is eligible
// once it renews.
func TestLeavingStaysThenClears(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := lease.New(e.db, lease.Options{Node: "a", Address: "a:1", TTL: 3 * time.Second})
	if err := a.SetLeaving(ctx); err != nil {
		t.Fatal(err)
	}
	heartbeat := func() time.Time {
		var at time.Time
		if err := e.db.QueryRow("SELECT heartbeat_at FROM ws_nodes WHERE name = 'a'").Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	before := heartbeat()
	actx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(actx) }()
	eventually(t, 5*time.Second, "a renews", func() bool { return heartbeat().After(before) })
	stop()
	<-done
	if nodes, err := a.Eligible(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("eligible %v, %v; want none: a renewed while leaving", nodes, err)
	}
	again := lease.New(e.db, lease.Options{Node: "a", Address: "a:1", TTL: 3 * time.Second})
	run(t, again)
	eventually(t, 5*time.Second, "a eligible again", func() bool {
		nodes, err := again.Eligible(ctx)
		return err == nil && len(nodes) == 1 && nodes[0].Name == "a"
	})
}

// TestUnknownSession: a session with no row is not found, not acquired.
func TestUnknownSession(t *testing.T) {
	e := newEnv(t)
	k := lease.New(e.db, lease.Options{Node: "a", Address: "a:1"})
	if err := k.Acquire(context.Background(), "nope"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("acquire: %v, want ErrNotFound", err)
	}
}

// TestCutOffLosesBeforeExpiry: a keeper that cannot reach Postgres gives
// its leases up (OnLost) before they expire by the database's clock, and
// another node gets them only after that expiry.
func TestCutOffLosesBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	ids := e.addSessions(t, 5)
	ctx := context.Background()
	const ttl = 2 * time.Second
	proxy := e.srv.NewProxy(t)
	var lostAt atomic.Int64
	var lostN atomic.Int32
	a := lease.New(open(t, proxy.URL(dbName(e.url))), lease.Options{Node: "a", Address: "a:1", TTL: ttl,
		OnLost: func(ids []string) {
			lostAt.CompareAndSwap(0, time.Now().UnixNano())
			lostN.Add(int32(len(ids)))
		}})
	b := lease.New(e.db, lease.Options{Node: "b", Address: "b:1", TTL: ttl})
	for _, id := range ids {
		if err := a.Acquire(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	run(t, a)
	// Let a renew a few times, then cut it off.
	time.Sleep(ttl)
	proxy.Cut()
	cutAt := time.Now()
	eventually(t, ttl, "a gives its leases up", func() bool { return lostN.Load() == int32(len(ids)) })
	lost := time.Unix(0, lostAt.Load())
	_, _, expires := e.lease(t, ids[0])
	for _, id := range ids[1:] {
		if _, _, x := e.lease(t, id); x.Before(expires) {
			expires = x
		}
	}
	t.Logf("cut at %v; lost %v after the cut, %v before the first expiry", cutAt.Format(time.StampMilli),
		lost.Sub(cutAt), expires.Sub(lost))
	if !lost.Before(expires) {
		t.Fatalf("OnLost at %v, not before the expiry %v", lost, expires)
	}
	if len(a.Held()) != 0 {
		t.Fatalf("a still holds %v", a.Held())
	}
	var took time.Time
	eventually(t, 2*ttl, "b takes every lease after the expiry", func() bool {
		for _, id := range ids {
			if err := b.Acquire(ctx, id); err != nil {
				ownedElsewhere(t, err, "a")
				return false
			}
		}
		took = time.Now()
		return true
	})
	if took.Before(expires) {
		t.Fatalf("b took a lease at %v, before its expiry %v", took, expires)
	}
	proxy.Restore()
	// Back, a renews nothing it lost and cannot take b's leases.
	ownedElsewhere(t, a.Acquire(ctx, ids[0]), "b")
}

// dbName is the database name at the end of a pgtest URL.
func dbName(url string) string {
	s := url[:len(url)-len("?sslmode=disable")]
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[i+1:]
		}
	}
	return s
}

// TestBatchRenew1000: one node renews 1,000 leases in one round trip, and
// each renewal extends every one of them. The figure is logged (go test
// -run BatchRenew -v ./lease/).
func TestBatchRenew1000(t *testing.T) {
	e := newEnv(t)
	ids := e.addSessions(t, 1000)
	ctx := context.Background()
	var lost atomic.Int32
	k := lease.New(e.db, lease.Options{Node: "a", Address: "a:1", TTL: time.Minute, OnLost: func(ids []string) { lost.Add(int32(len(ids))) }})
	for _, id := range ids {
		if err := k.Acquire(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var before time.Time
	if err := e.db.QueryRow(`SELECT max(expires_at) FROM ws_leases`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	const rounds = 20
	times := make([]time.Duration, rounds)
	for i := range times {
		start := time.Now()
		k.RenewOnce(ctx)
		times[i] = time.Since(start)
	}
	var renewed int
	if err := e.db.QueryRow(`SELECT count(*) FROM ws_leases WHERE owner = 'a' AND expires_at > $1`, before).Scan(&renewed); err != nil {
		t.Fatal(err)
	}
	if renewed != 1000 || lost.Load() != 0 || len(k.Held()) != 1000 {
		t.Fatalf("renewed %d, lost %d, held %d; want 1000, 0, 1000", renewed, lost.Load(), len(k.Held()))
	}
	slices.Sort(times)
	t.Logf("renewal of 1,000 leases + heartbeat, one round trip: median %v, max %v over %d rounds", times[rounds/2], times[rounds-1], rounds)
}

// TestRetryAfter: a refusal says when to ask again only when the holder
// has stopped renewing (then the lease surely runs out at its expiry, by
// the database's clock), never while the holder renews and may release
// the lease any moment.
func TestRetryAfter(t *testing.T) {
	e := newEnv(t)
	ids := e.addSessions(t, 2)
	ctx := context.Background()
	const ttl = 3 * time.Second

	// a took a lease and then renewed nothing (no heartbeat at all, as a
	// node killed right after).
	a := lease.New(e.db, lease.Options{Node: "a", Address: "a:1", TTL: ttl})
	if err := a.Acquire(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	b := lease.New(e.db, lease.Options{Node: "b", Address: "b:1", TTL: ttl})
	oe := ownedElsewhere(t, b.Acquire(ctx, ids[0]), "a")
	if after := oe.RetryAfter(); after <= 0 || after > ttl {
		t.Fatalf("RetryAfter %v from a holder that renews nothing, want in (0, %v]", after, ttl)
	}

	// c renews (its Run heartbeats): no hint, it may release any moment.
	c := lease.New(e.db, lease.Options{Node: "c", Address: "c:1", TTL: ttl})
	if err := c.Acquire(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(runCtx) }()
	defer func() { stop(); <-done }()
	eventually(t, 5*time.Second, "c's heartbeat", func() bool {
		eligible, err := b.Eligible(ctx)
		return err == nil && len(eligible) == 1 && eligible[0].Name == "c"
	})
	oe = ownedElsewhere(t, b.Acquire(ctx, ids[1]), "c")
	if after := oe.RetryAfter(); after != 0 {
		t.Fatalf("RetryAfter %v from a renewing holder, want 0", after)
	}
}
