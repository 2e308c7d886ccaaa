package cluster_test

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakIgnores()...)
}

// member is one node of a test cluster.
type member struct {
	name  string
	node  *cluster.Node
	local *local
	svc   *cluster.Service
}

type memberOpts struct {
	provider func() protocluster.ClusterProvider
	tls      *tls.Config
	addr     string
	timeout  time.Duration
	noDB     bool // a member the lease table does not know (never eligible)
	reg      prometheus.Registerer
	log      *slog.Logger  // default testLog
	sweep    time.Duration // default 300ms
}

const (
	batchSize  = 4
	batchPause = 150 * time.Millisecond
)

func startMember(t *testing.T, d *db, name string, o memberOpts) *member {
	t.Helper()
	addr := o.addr
	if addr == "" {
		addr = freeaddr.For(t)
	}
	if !o.noDB {
		d.join(name, addr)
	}
	l := newLocal(d, name)
	n, err := cluster.Start(cluster.Options{
		Name: name, Addr: addr, Provider: o.provider(), TLS: o.tls,
		Leases: leases{d: d, name: name}, Local: l, Registry: d,
		RequestTimeout: cmpOr(o.timeout, 5*time.Second), SweepEvery: cmpOr(o.sweep, 300*time.Millisecond),
		BatchSize: batchSize, BatchPause: batchPause,
		Log: cmp.Or(o.log, testLog(t, name)), Registerer: o.reg,
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(n.Close)
	return &member{name: name, node: n, local: l, svc: n.Service()}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func testLog(t *testing.T, name string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("s%03d", i)
	}
	return out
}

func etcdProvider(t *testing.T, endpoint string) func() protocluster.ClusterProvider {
	return func() protocluster.ClusterProvider {
		p, err := cluster.EtcdProvider(cluster.EtcdOptions{Endpoints: []string{endpoint}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func waitMembers(t *testing.T, want int, ms ...*member) {
	t.Helper()
	for _, m := range ms {
		eventually(t, 20*time.Second, fmt.Sprintf("%s sees %d members", m.name, want), func() bool {
			return len(m.node.Members()) == want
		})
	}
}

// allHeld waits until every one of all is held by exactly one of nodes.
func allHeld(t *testing.T, d *db, all []string, nodes ...string) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("every session held by one of %v", nodes), func() bool {
		for _, id := range all {
			if !slices.Contains(nodes, d.holder(id)) {
				return false
			}
		}
		return true
	})
}

func TestEtcdCluster(t *testing.T) {
	etcd := etcdtest.Start(t)
	all := ids(24)
	d := newDB(all...)
	o := memberOpts{provider: etcdProvider(t, etcd.Endpoint)}
	a := startMember(t, d, "a", o)
	b := startMember(t, d, "b", o)
	c := startMember(t, d, "c", o)
	waitMembers(t, 3, a, b, c)
	ms := []*member{a, b, c}
	ctx := context.Background()

	t.Run("the sweeps adopt every session, spread over the nodes", func(t *testing.T) {
		allHeld(t, d, all, "a", "b", "c")
		spread := d.spread()
		for _, m := range ms {
			if spread[m.name] == 0 || spread[m.name] > len(all)*2/3 {
				t.Errorf("spread %v", spread)
			}
		}
	})

	t.Run("a request on any node reaches the session's node", func(t *testing.T) {
		for _, m := range ms {
			for _, id := range all[:8] {
				st, err := m.svc.Status(ctx, id)
				if err != nil {
					t.Fatalf("%s: status %s: %v", m.name, id, err)
				}
				if st.PushName == nil || *st.PushName != d.holder(id) {
					t.Errorf("%s: status of %s answered by %v, held by %s", m.name, id, st.PushName, d.holder(id))
				}
			}
			sent, err := m.svc.Send(ctx, all[0], sessions.SendRequest{To: "+1555", Text: "hi", IdempotencyKey: "k1"})
			if err != nil || sent.ID != d.holder(all[0])+"/k1/hi" {
				t.Errorf("%s: send: %+v %v", m.name, sent, err)
			}
		}
	})

	t.Run("errors come back as the same sentinels", func(t *testing.T) {
		_, err := a.svc.Status(ctx, "unknown")
		if !errors.Is(err, sessions.ErrNotFound) || !strings.Contains(err.Error(), "session unknown is not on node") {
			t.Errorf("unknown session: %v", err)
		}
		_, err = b.svc.Status(ctx, "wrong-state")
		var de *sessions.Error
		if !errors.Is(err, sessions.ErrWrongState) || !errors.As(err, &de) || de.State != sessions.StatePairing {
			t.Errorf("wrong state: %#v", err)
		}
		if err := c.svc.MarkRead(ctx, all[1], sessions.ReadRequest{Chat: "x"}); !errors.Is(err, sessions.ErrInvalid) {
			t.Errorf("mark read without id: %v", err)
		}
		if err := c.svc.MarkRead(ctx, all[1], sessions.ReadRequest{ID: "m1", Chat: "x"}); err != nil {
			t.Errorf("mark read (the id crosses): %v", err)
		}
	})

	t.Run("the fleet aggregates every node's sessions with their node", func(t *testing.T) {
		f, err := b.svc.Fleet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Sessions) != len(all) || f.Counts[sessions.StateConnected] != len(all) || f.Restore.Found != len(all) || f.Restore.Finished == nil {
			t.Fatalf("fleet: %d sessions, counts %v, restore %+v", len(f.Sessions), f.Counts, f.Restore)
		}
		for _, st := range f.Sessions {
			if st.Node != d.holder(st.SenderID) {
				t.Errorf("%s: node %q, held by %s", st.SenderID, st.Node, d.holder(st.SenderID))
			}
		}
	})

	t.Run("create from any node lands on one node, and follows its holder", func(t *testing.T) {
		res, err := c.svc.Create(ctx, "new1")
		if err != nil || !res.Created {
			t.Fatalf("create: %+v %v", res, err)
		}
		all = append(all, "new1")
		for _, m := range ms {
			st, err := m.svc.Status(ctx, "new1")
			if err != nil || *st.PushName != d.holder("new1") {
				t.Errorf("%s: status of new1: %v %v", m.name, st.PushName, err)
			}
		}
	})

	t.Run("a dead node's sessions are adopted by the others", func(t *testing.T) {
		var onC []string
		for _, id := range all {
			if d.holder(id) == "c" {
				onC = append(onC, id)
			}
		}
		c.local.crash()
		c.node.Close()
		d.die("c")
		allHeld(t, d, all, "a", "b")
		if d.maxHosts != 1 {
			t.Errorf("a session was hosted %d times at once", d.maxHosts)
		}
		for _, id := range onC {
			if _, err := a.svc.Status(ctx, id); err != nil {
				t.Errorf("status of %s after the failover: %v", id, err)
			}
		}
	})

	t.Run("a returning node gets its share back in paced batches", func(t *testing.T) {
		d.mu.Lock()
		d.releases = nil
		d.mu.Unlock()
		c2 := startMember(t, d, "c", o)
		waitMembers(t, 3, a, b, c2)
		eventually(t, 20*time.Second, "c hosts sessions again", func() bool { return d.spread()["c"] > 0 })
		// Stable: no release for a second.
		eventually(t, 20*time.Second, "the hand-overs end", func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return len(d.releases) > 0 && time.Since(d.releases[len(d.releases)-1].at) > time.Second
		})
		allHeld(t, d, all, "a", "b", "c")
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.maxInflight != 1 || d.maxHosts != 1 {
			t.Errorf("releases in flight at once %d, hosts of one session at once %d", d.maxInflight, d.maxHosts)
		}
		last := map[string]time.Time{}
		for _, r := range d.releases {
			if r.n > batchSize {
				t.Errorf("a batch of %d", r.n)
			}
			if prev, ok := last[r.node]; ok && r.at.Sub(prev) < batchPause {
				t.Errorf("%s released two batches %v apart", r.node, r.at.Sub(prev))
			}
			last[r.node] = r.at
		}
		t.Logf("%d batches handed over, spread %v", len(d.releases), d.spreadLocked())
	})

	t.Run("a graceful shutdown hands everything over", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := a.node.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if h, _ := a.local.Hosted(ctx); len(h) != 0 {
			t.Errorf("a still hosts %v", h)
		}
		allHeld(t, d, all, "b", "c")
	})
}
