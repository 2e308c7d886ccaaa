package app_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
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

// freeAddr is a loopback host:port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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
		cfg.ClusterAddr = freeAddr(t)
		cfg.ClusterAdvertise = cfg.ClusterAddr
		return e2e.Start(t, cfg)
	}
	n1, n2 := node("n1"), node("n2")
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
	n2.Stop()
	n1.WaitConnected(count, e2e.Wait)
	if most, replaced := maxConcurrent(t, f); most != 1 || replaced != 0 {
		t.Fatalf("fake record: %d connections at once, %d replaced; want 1, 0", most, replaced)
	}
}
