package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// pgConfig is e2e.Config on a fresh Postgres database, against f, with a
// pool for the test's own queries.
func pgConfig(t *testing.T, url string, f *e2e.Fake) config.Config {
	t.Helper()
	cfg := e2e.Config(t.TempDir(), f)
	cfg.Store, cfg.DatabaseURL, cfg.LeaseTTL, cfg.NodeName = config.StorePostgres, url, 3*time.Second, "first"
	return cfg
}

func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := pgstore.Open(context.Background(), url, pgstore.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// maxConcurrent is the most logged-in connections the fake ever saw at
// once for one device, over every device.
func maxConcurrent(t *testing.T, f *e2e.Fake) (most, replaced int) {
	t.Helper()
	rec, err := f.ConnectionRecord(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rec {
		most, replaced = max(most, d.MaxConcurrent), replaced+d.Replaced
	}
	return most, replaced
}

// TestTwoProcessesOneDatabase: with STORE=postgres, even without CLUSTER,
// a second process on the same database does not connect a session the
// first one holds (it waits, owned_elsewhere), and takes it once the first
// one stops and releases the lease.
func TestTwoProcessesOneDatabase(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	url := pgtest.Start(t).NewDatabase(t)
	db := openDB(t, url)
	a := e2e.Start(t, pgConfig(t, url, f))
	a.Pair("alice")
	var owner string
	if err := db.QueryRow("SELECT owner FROM ws_leases WHERE sender_id = 'alice'").Scan(&owner); err != nil || owner == "" {
		t.Fatalf("lease of alice: owner %q, %v", owner, err)
	}
	bcfg := pgConfig(t, url, f)
	bcfg.NodeName = "second"
	b := e2e.Start(t, bcfg)
	st := b.WaitState("alice", sessions.StateConnecting, e2e.Wait)
	e2e.WaitFor(t, e2e.Wait, "alice owned elsewhere on the second process", func() (bool, string) {
		st = b.Status("alice")
		return e2e.ErrCode(st) == sessions.CodeOwnedElsewhere, e2e.Show(st)
	}, b.Logs)
	if most, replaced := maxConcurrent(t, f); most != 1 || replaced != 0 {
		t.Fatalf("fake record: %d connections at once, %d replaced; want 1, 0", most, replaced)
	}
	a.Stop()
	b.WaitState("alice", sessions.StateConnected, e2e.Wait)
	if most, replaced := maxConcurrent(t, f); most != 1 || replaced != 0 {
		t.Fatalf("fake record: %d connections at once, %d replaced; want 1, 0", most, replaced)
	}
}

// TestClusterOfTwo: CLUSTER=etcd wires the lease keeper, the manager and
// the registry: sessions created and paired through one node spread over
// both, the fleet from either lists them all with their node, and a node
// stopped hands its sessions over to the other.
func TestClusterOfTwo(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	url := pgtest.Start(t).NewDatabase(t)
	etcd := etcdtest.Start(t)
	node := func(name string) *e2e.Service {
		cfg := pgConfig(t, url, f)
		cfg.Cluster, cfg.EtcdEndpoints, cfg.NodeName, cfg.ClusterInsecure = config.ClusterEtcd, etcd.Endpoint, name, true
		cfg.ClusterAddr = freeaddr.For(t)
		cfg.ClusterAdvertise = cfg.ClusterAddr
		return e2e.Start(t, cfg)
	}
	n1, n2 := node("n1"), node("n2")
	// n1's live event stream, open before the sessions exist: it must show
	// the state changes of n2's sessions too (package relay).
	streamed := streamStates(t, n1)
	const count = 8
	for i := range count {
		n1.Pair(fmt.Sprintf("s%d", i))
	}
	var fleet sessions.Fleet
	e2e.WaitFor(t, e2e.Wait, "every session connected, on both nodes", func() (bool, string) {
		fleet = n2.Fleet()
		on := map[string]int{}
		for _, st := range fleet.Sessions {
			if st.State == sessions.StateConnected {
				on[st.Node]++
			}
		}
		return on["n1"]+on["n2"] == count && on["n1"] > 0 && on["n2"] > 0, fmt.Sprint(on)
	}, n1.Logs, n2.Logs)
	var onN2 string
	for _, st := range fleet.Sessions {
		if st.Node == "n2" {
			onN2 = st.SenderID
		}
	}
	if _, err := n2.Client.Test(context.Background(), onN2, "drop", sessions.TestParams{}); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, e2e.Wait, "n1's event stream to show n2's session "+onN2+" reconnecting", func() (bool, string) {
		got := streamed()
		return got[onN2][sessions.StateReconnecting], fmt.Sprint(got[onN2])
	}, n1.Logs, n2.Logs)
	n1.WaitConnected(count, e2e.Wait)
	n2.Stop()
	n1.WaitConnected(count, e2e.Wait)
	if most, replaced := maxConcurrent(t, f); most != 1 || replaced != 0 {
		t.Fatalf("fake record: %d connections at once, %d replaced; want 1, 0", most, replaced)
	}
}

// streamStates reads svc's event stream until the test ends; the function
// it returns gives the states it has shown for each session so far.
func streamStates(t *testing.T, svc *e2e.Service) func() map[string]map[sessions.State]bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := client.New(svc.Base, svc.Config.APIKey) // no client timeout: it would cut the stream
	stream, err := c.Events(ctx, client.EventsOptions{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]map[sessions.State]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := stream.Next()
			if err != nil {
				return
			}
			var st sessions.Status
			if ev.Type == string(sessions.EventSessionState) && json.Unmarshal(ev.Data, &st) == nil {
				mu.Lock()
				if seen[st.SenderID] == nil {
					seen[st.SenderID] = map[sessions.State]bool{}
				}
				seen[st.SenderID][st.State] = true
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); _ = stream.Close(); <-done })
	return func() map[string]map[sessions.State]bool {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]map[sessions.State]bool, len(seen))
		for id, states := range seen {
			out[id] = maps.Clone(states)
		}
		return out
	}
}
