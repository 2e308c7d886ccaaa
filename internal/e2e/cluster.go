package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/testcerts"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Bin is the service binary (Build), FakeBin cmd/fakewa's
	// (BuildFake).
	Bin, FakeBin string
	// Nodes is how many nodes start, named n1, n2, ...
	Nodes int
	// LeaseTTL is every node's LEASE_TTL (0: the default).
	LeaseTTL time.Duration
	// Proxied nodes (by index) reach Postgres through their own
	// pgtest.Proxy, which the test can Cut.
	Proxied []int
	// Tune, when set, changes each node's configuration before it starts.
	Tune func(i int, cfg *config.Config)
}

// Cluster is a test cluster of child processes: one Postgres, one etcd,
// one external fake WhatsApp server (cmd/fakewa) and the nodes, each with
// its own sessions directory, API and cluster ports, NODE_NAME and
// CA-signed certificate (mutual TLS between the nodes). The test's cleanup
// kills every child.
type Cluster struct {
	T     testing.TB
	PG    *pgtest.Server
	URL   string  // the database's URL (direct)
	DB    *sql.DB // a small pool on it, for the test's queries
	Etcd  *etcdtest.Server
	Fake  *fakeserver.Remote // the fake's control API
	Nodes []*Node

	fakeAddr, fakeControl, fakeCA string
	certs                         string // directory of the CA and node certificates
	ca                            *testcerts.CA
	opts                          ClusterOptions
}

// Node is one node of a Cluster: its service (the child process, replaced
// by Restart) and, if proxied, its Postgres proxy.
type Node struct {
	*Service
	Name  string
	Proxy *pgtest.Proxy
}

// StartCluster starts Postgres, etcd, the fake and opts.Nodes nodes, and
// waits until each listens.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{T: t, opts: opts, PG: pgtest.Start(t), Etcd: etcdtest.Start(t), certs: t.TempDir()}
	c.URL = c.PG.NewDatabase(t)
	db, err := pgstore.Open(context.Background(), c.URL, pgstore.PoolOptions{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c.DB = db
	c.startFake()
	if c.ca, err = testcerts.NewCA(c.certs); err != nil {
		t.Fatal(err)
	}
	for i := range opts.Nodes {
		c.Nodes = append(c.Nodes, c.startNode(i))
	}
	return c
}

// BuildFake builds cmd/fakewa to out.
func BuildFake(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/fakewa")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build fakewa: %v\n%s", err, b)
	}
	return nil
}

// startFake runs cmd/fakewa on free loopback ports and waits until its
// control API answers.
func (c *Cluster) startFake() {
	t := c.T
	dir := t.TempDir()
	c.fakeAddr, c.fakeControl = freeaddr.For(t), freeaddr.For(t)
	c.fakeCA = filepath.Join(dir, "ca.pem")
	cmd := exec.Command(c.opts.FakeBin, "-addr", c.fakeAddr, "-control", c.fakeControl,
		"-state", filepath.Join(dir, "state.json"), "-ca-out", c.fakeCA)
	logs := &Logs{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	c.Fake = fakeserver.NewRemote("http://"+c.fakeControl, &http.Client{Timeout: 10 * time.Second})
	WaitFor(t, Wait, "cmd/fakewa to answer", func() (bool, string) {
		_, err := c.Fake.Stats(context.Background())
		if _, serr := os.Stat(c.fakeCA); err == nil && serr != nil {
			err = serr
		}
		return err == nil, fmt.Sprint(err)
	}, logs)
}

// Config is node i's configuration.
func (c *Cluster) Config(i int) config.Config {
	name := fmt.Sprintf("n%d", i+1)
	dir := filepath.Join(c.certs, name)
	cfg := Config(filepath.Join(c.certs, name+"-sessions"), nil)
	cfg.FakeServerAddr, cfg.FakeControlURL, cfg.FakeCAFile = c.fakeAddr, "http://"+c.fakeControl, c.fakeCA
	cfg.Store, cfg.DatabaseURL = config.StorePostgres, c.URL
	cfg.Cluster, cfg.EtcdEndpoints, cfg.NodeName = config.ClusterEtcd, c.Etcd.Endpoint, name
	cfg.ClusterTLSCert, cfg.ClusterTLSKey, cfg.ClusterTLSCA = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), c.ca.File
	if c.opts.LeaseTTL != 0 {
		cfg.LeaseTTL = c.opts.LeaseTTL
	}
	cfg.ShutdownTimeout = 20 * time.Second
	if c.opts.Tune != nil {
		c.opts.Tune(i, &cfg)
	}
	return cfg
}

// AddNode starts the next node (n1, n2, ...) and waits until it listens:
// after StartCluster with no nodes, a test can fill the database first.
func (c *Cluster) AddNode() *Node {
	c.T.Helper()
	n := c.startNode(len(c.Nodes))
	c.Nodes = append(c.Nodes, n)
	return n
}

// startNode starts node i on fresh ports (its directory and certificate
// made the first time).
func (c *Cluster) startNode(i int) *Node {
	t := c.T
	cfg := c.Config(i)
	n := &Node{Name: cfg.NodeName}
	for _, p := range c.opts.Proxied {
		if p == i {
			n.Proxy = c.PG.NewProxy(t)
		}
	}
	if n.Proxy != nil {
		cfg.DatabaseURL = n.Proxy.URL(dbName(t, c.URL))
	}
	if err := os.MkdirAll(cfg.SessionsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.ClusterTLSCert); err != nil {
		if _, _, err := c.ca.Node(filepath.Dir(cfg.ClusterTLSCert), cfg.NodeName); err != nil {
			t.Fatal(err)
		}
	}
	cfg.ClusterAddr = freeaddr.For(t)
	cfg.ClusterAdvertise = cfg.ClusterAddr
	n.Service = StartProcess(t, c.opts.Bin, cfg)
	return n
}

// Restart starts node n again (after Kill or Terminate) on the same
// sessions directory, name and database path (its proxy, if any).
func (n *Node) Restart() {
	n.T.Helper()
	cfg := n.Config
	cfg.ClusterAddr = freeaddr.For(n.T)
	cfg.ClusterAdvertise = cfg.ClusterAddr
	n.Service = StartProcess(n.T, n.Bin, cfg, n.Env...)
}

// Term sends SIGTERM and waits until the node exited (cleanly); it
// returns how long the exit took.
func (n *Node) Term() time.Duration {
	n.T.Helper()
	code, took := n.Terminate(Wait + 20*time.Second)
	if code != 0 {
		n.T.Fatalf("%s exited %d after SIGTERM:\n%s", n.Name, code, n.Logs.Tail(40))
	}
	return took
}

// Record is the fake server's connection record, by device.
func (c *Cluster) Record() map[string]fakeserver.DeviceConnections {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, err := c.Fake.ConnectionRecord(ctx)
	if err != nil {
		c.T.Fatalf("connection record: %v", err)
	}
	out := make(map[string]fakeserver.DeviceConnections, len(rec))
	for _, d := range rec {
		out[d.Device] = d
	}
	return out
}

// CheckNeverTwice fails the test if the fake ever saw two logged-in
// connections of one device at once, or replaced a stream.
func (c *Cluster) CheckNeverTwice() {
	c.T.Helper()
	for dev, d := range c.Record() {
		if d.MaxConcurrent > 1 || d.Replaced > 0 {
			c.T.Errorf("device %s: %d connections at once, %d streams replaced", dev, d.MaxConcurrent, d.Replaced)
		}
	}
}

// dbName is the database name of a postgres:// URL.
func dbName(t testing.TB, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}
