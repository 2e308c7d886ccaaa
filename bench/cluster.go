package main

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	"github.com/prometheus/procfs"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/testcerts"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// The cluster scenario: N seeded SQLite sessions migrated by migrate-store
// into one Postgres, then three service nodes (child processes, static
// membership, mutual TLS between them, STORE=postgres) restore them all
// against one cmd/fakewa; then one node is killed with SIGKILL and the
// bench times each of its sessions until it is logged in again from a
// survivor. "Connected" here is the fake server's word: a logged-in
// connection of the session's device, read from its connection record,
// which also shows whether a device was ever connected twice at once.

// clusterNodes is how many nodes the scenario runs.
const clusterNodes = 3

// clusterDB is the database the nodes share.
const clusterDB = "bench"

// clusterResult is one run of the cluster scenario.
type clusterResult struct {
	sessions, run int
	ok            bool
	failure       string
	migrate       dur // migrate-store of the N SQLite sessions
	// allConnected: from the first node's start until every device is
	// logged in at the fake server.
	allConnected dur
	taken        // from the first node's start to all connected
	nodes        []nodeFigures
	// The Postgres side: the most client connections to the shared
	// database at once (sampled every 100 ms over the whole run), and the
	// rows and bytes (pg_total_relation_size: heap, indexes, TOAST) of
	// whatsmeow's and the service's tables.
	pgConns         int
	pgRows, pgBytes int64
	// Kill -9 of one node: its sessions, and per session the time from
	// the kill to its device's next login (from a survivor).
	killed         string
	killedSessions int
	failover       []time.Duration // sorted
	failoverTaken  taken
	// Over the whole run, from the fake server's record: the most
	// logged-in connections one device ever had at once, and the streams
	// replaced by a second login.
	maxConcurrent, replaced int
}

// nodeFigures is one node once every session is connected.
type nodeFigures struct {
	name            string
	sessions        int // hosted (status field node)
	rss, peakRSS    int64
	httpReady       dur
	postKillSession int // hosted after the kill
}

// clusterNode is one running node.
type clusterNode struct {
	name string
	p    *proc
}

// runClusterScenario runs the cluster scenario at every -cluster-sizes,
// -cluster-runs times each.
func (b *bench) runClusterScenario(ctx context.Context, rep *report) error {
	for _, n := range b.clusterSizes {
		for run := range max(b.clusterRuns, 1) {
			logf("cluster: %d sessions on %d nodes (run %d)", n, clusterNodes, run+1)
			r, err := b.runCluster(ctx, n, run+1)
			rep.clusters = append(rep.clusters, r)
			if err != nil {
				return err
			}
			if r.ok {
				logf("cluster n=%d: all connected %v after the first start; kill -9 of %s (%d sessions): p50 %v, p99 %v, max %v",
					n, r.allConnected, r.killed, r.killedSessions, dur(quantile(r.failover, 0.5)), dur(quantile(r.failover, 0.99)), dur(quantile(r.failover, 1)))
			} else {
				logf("cluster n=%d FAILED: %s", n, r.failure)
			}
		}
	}
	return nil
}

// runCluster is one run at n sessions. A run that does not reach its end
// is a result with its failure; an error is returned only when the bench
// itself cannot go on.
func (b *bench) runCluster(ctx context.Context, n, run int) (r clusterResult, err error) {
	r = clusterResult{sessions: n, run: run}
	tag := fmt.Sprintf("cluster-n%d-run%d", n, run)
	dir := filepath.Join(b.work, "run", tag)
	defer os.RemoveAll(dir)
	sqliteDir := filepath.Join(dir, "sqlite")
	if err := b.copySessions(ctx, sqliteDir, n); err != nil {
		return r, err
	}
	pg, err := pgtest.Run()
	if err != nil {
		return r, err
	}
	defer func() {
		if err := pg.Stop(); err != nil {
			logf("  %v", err)
		}
	}()
	url, err := pg.CreateDatabase(clusterDB)
	if err != nil {
		return r, err
	}

	// Migrate: the service's own command, as an operator runs it.
	began := time.Now()
	cmd := exec.CommandContext(ctx, b.serviceBin, "migrate-store", "--from", sqliteDir, "--to", url)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.failure = fmt.Sprintf("migrate-store: %v: %s", err, lastLines(string(out), 5))
		return r, nil
	}
	r.migrate = dur(time.Since(began))
	logf("  migrate-store of %d sessions: %v", n, r.migrate)
	syscall.Sync()

	fake, err := startFake(ctx, b.fakeBin, b.fakeEnv, filepath.Join(b.work, "logs", "fakewa-"+tag+".log"))
	if err != nil {
		return r, err
	}
	defer fake.stop(10 * time.Second)
	remote := fakeserver.NewRemote("http://"+fake.control, nil)

	stopSampling := sampleConnections(pg)
	defer func() { r.pgConns = stopSampling() }()

	nodes, err := b.startNodes(dir, tag, url, fake)
	defer func() {
		for _, nd := range nodes {
			nd.p.stop(time.Minute)
		}
	}()
	if err != nil {
		return r, err
	}
	first := nodes[0].p.started
	window := startWindow(append(pids(nodes), fake.pid())...)
	devices := make(map[string]string, n) // device -> session
	for i := range n {
		devices[seededDevice(i)] = sessionID(i)
	}
	at, err := waitLoggedIn(ctx, remote, devices, nil, first, restoreTimeout)
	r.taken = window()
	if err != nil {
		r.failure = "restore: " + err.Error()
		return r, nil
	}
	r.allConnected = dur(slices.Max(values(at)))
	for _, nd := range nodes {
		r.nodes = append(r.nodes, nodeFigures{name: nd.name})
	}

	// Settle, then take each node's memory and the sessions it hosts.
	select {
	case <-time.After(b.settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	hosted, err := hostedBy(ctx, nodes[0].p, n)
	if err != nil {
		r.failure = err.Error()
		return r, nil
	}
	for i, nd := range nodes {
		f := &r.nodes[i]
		f.sessions = len(hosted[nd.name])
		if p, err := procfs.NewProc(nd.p.pid()); err == nil {
			if st, err := p.NewStatus(); err == nil {
				f.rss, f.peakRSS = int64(st.VmRSS), int64(st.VmHWM)
			}
		}
	}
	if r.pgRows, r.pgBytes, err = tableCost(ctx, pg); err != nil {
		r.failure = "table sizes: " + err.Error()
		return r, nil
	}

	// Kill -9 the node that hosts the most sessions.
	victim := slices.MaxFunc(nodes, func(a, c clusterNode) int { return cmp.Compare(len(hosted[a.name]), len(hosted[c.name])) })
	r.killed, r.killedSessions = victim.name, len(hosted[victim.name])
	theirs := map[string]string{}
	for _, id := range hosted[victim.name] {
		i, _ := strconv.Atoi(strings.TrimPrefix(id, "s"))
		theirs[seededDevice(i)] = id
	}
	base, err := loginsNow(ctx, remote)
	if err != nil {
		return r, err
	}
	survivors := slices.DeleteFunc(slices.Clone(nodes), func(nd clusterNode) bool { return nd.name == victim.name })
	window = startWindow(append(pids(survivors), fake.pid())...)
	killedAt := time.Now()
	_ = victim.p.cmd.Process.Kill()
	<-victim.p.exited
	at, err = waitLoggedIn(ctx, remote, theirs, base, killedAt, 3*time.Minute)
	r.failoverTaken = window()
	if err != nil {
		r.failure = fmt.Sprintf("after kill -9 of %s: %v", victim.name, err)
		return r, nil
	}
	r.failover = values(at)
	slices.Sort(r.failover)
	// Every session is connected on a survivor, per the survivors' API.
	after, err := hostedBy(ctx, survivors[0].p, n)
	if err != nil {
		r.failure = "after the kill: " + err.Error()
		return r, nil
	}
	for i := range r.nodes {
		r.nodes[i].postKillSession = len(after[r.nodes[i].name])
	}
	if k := len(after[victim.name]); k > 0 {
		r.failure = fmt.Sprintf("%d sessions still shown on the killed node", k)
		return r, nil
	}

	rec, err := remote.ConnectionRecord(ctx)
	if err != nil {
		return r, err
	}
	for _, d := range rec {
		r.maxConcurrent, r.replaced = max(r.maxConcurrent, d.MaxConcurrent), r.replaced+d.Replaced
	}
	r.ok = r.maxConcurrent <= 1 && r.replaced == 0
	if !r.ok {
		r.failure = fmt.Sprintf("a device was connected twice at once (most at once %d, streams replaced %d)", r.maxConcurrent, r.replaced)
	}
	return r, nil
}

// startNodes starts the cluster's nodes, each with its own SESSIONS_DIR,
// HTTP, cluster and membership ports, and certificate, and waits for
// their HTTP servers. It returns the nodes started even on an error.
func (b *bench) startNodes(dir, tag, url string, fake *proc) ([]clusterNode, error) {
	ca, err := testcerts.NewCA(filepath.Join(dir, "tls"))
	if err != nil {
		return nil, err
	}
	var peers, static []string
	for range clusterNodes {
		addr := mustFreeAddr()
		_, port, _ := net.SplitHostPort(addr)
		peers, static = append(peers, addr), append(static, port)
	}
	var nodes []clusterNode
	for i := range clusterNodes {
		name := fmt.Sprintf("node-%d", i+1)
		sessionsDir := filepath.Join(dir, name)
		if err := os.MkdirAll(sessionsDir, 0o700); err != nil {
			return nodes, err
		}
		certFile, keyFile, err := ca.Node(filepath.Join(dir, "tls", name), name)
		if err != nil {
			return nodes, err
		}
		env := append(slices.Clone(b.serviceEnv), "STORE=postgres", "DATABASE_URL="+url,
			"CLUSTER=static", "CLUSTER_PEERS="+strings.Join(peers, ","), "CLUSTER_STATIC_PORT="+static[i],
			"CLUSTER_ADDR="+mustFreeAddr(), "NODE_NAME="+name,
			"CLUSTER_TLS_CERT="+certFile, "CLUSTER_TLS_KEY="+keyFile, "CLUSTER_TLS_CA="+ca.File)
		p, err := startService(b.serviceBin, sessionsDir, filepath.Join(b.work, "logs", tag+"-"+name+".log"), b.apiKey, fake, env)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, clusterNode{name: name, p: p})
	}
	for _, nd := range nodes {
		if err := nd.p.waitHTTP(context.Background(), "http://"+nd.p.addr+"/healthz", time.Minute); err != nil {
			return nodes, err
		}
	}
	return nodes, nil
}

// seededDevice is the fake server's name ("user:device") of the i-th
// seeded session's device (copySessions seeds user 1555%07d, device 1).
func seededDevice(i int) string { return fmt.Sprintf("1555%07d:1", i) }

// loginsNow is every device's login count in the fake server's record.
func loginsNow(ctx context.Context, remote *fakeserver.Remote) (map[string]int, error) {
	rec, err := remote.ConnectionRecord(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(rec))
	for _, d := range rec {
		out[d.Device] = d.Logins
	}
	return out, nil
}

// waitLoggedIn polls the fake server's connection record every 100 ms
// until each of devices has a logged-in connection open (and, with base, a
// login after base's count), and returns for each device the time from
// since to the poll that first saw it so. The polling period bounds the
// resolution.
func waitLoggedIn(ctx context.Context, remote *fakeserver.Remote, devices map[string]string, base map[string]int, since time.Time, timeout time.Duration) (map[string]time.Duration, error) {
	at := make(map[string]time.Duration, len(devices))
	deadline := time.Now().Add(timeout)
	for {
		rec, err := remote.ConnectionRecord(ctx)
		if err != nil {
			return nil, err
		}
		now := time.Since(since)
		for _, d := range rec {
			if _, want := devices[d.Device]; !want || d.Open < 1 || d.Logins <= base[d.Device] {
				continue
			}
			if _, seen := at[d.Device]; !seen {
				at[d.Device] = now
			}
		}
		if len(at) == len(devices) {
			return at, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d devices logged in after %v", len(at), len(devices), timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// hostedBy asks node p for the fleet's status and returns the ids of the
// connected sessions by the node that hosts them; all n must be connected.
func hostedBy(ctx context.Context, p *proc, n int) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	f, err := p.api.Fleet(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet status: %w", err)
	}
	out := map[string][]string{}
	for _, st := range f.Sessions {
		if st.State == sessions.StateConnected {
			out[st.Node] = append(out[st.Node], st.SenderID)
		}
	}
	if c := f.Counts[sessions.StateConnected]; c != n {
		return out, fmt.Errorf("fleet status: %d of %d connected (%v)", c, n, f.Counts)
	}
	return out, nil
}

// pids are the nodes' process ids.
func pids(nodes []clusterNode) []int {
	var out []int
	for _, nd := range nodes {
		out = append(out, nd.p.pid())
	}
	return out
}

// values are m's values.
func values(m map[string]time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// quantile is the q-quantile (nearest rank) of sorted; 0 if empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// tableCost is the rows and bytes (with indexes and TOAST) of whatsmeow's
// and the service's tables in the shared database.
func tableCost(ctx context.Context, s *pgtest.Server) (rows, bytes int64, err error) {
	db, err := sql.Open("pgx", s.URL(clusterDB))
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	q, err := db.QueryContext(ctx, `SELECT c.relname, pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
		WHERE c.relkind = 'r' AND ns.nspname = current_schema() AND (c.relname LIKE 'whatsmeow%' OR c.relname LIKE 'ws\_%')`)
	if err != nil {
		return 0, 0, err
	}
	sizes := map[string]int64{}
	for q.Next() {
		var name string
		var size int64
		if err := q.Scan(&name, &size); err != nil {
			q.Close()
			return 0, 0, err
		}
		sizes[name] = size
	}
	q.Close()
	if err := q.Err(); err != nil {
		return 0, 0, err
	}
	for name, size := range sizes {
		var k int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+name+`"`).Scan(&k); err != nil {
			return 0, 0, err
		}
		rows, bytes = rows+k, bytes+size
	}
	return rows, bytes, nil
}

// sampleConnections counts the client connections to the shared database
// every 100 ms (from a connection to another database, which the count
// leaves out) until the returned function is called; it returns the most
// seen at once. Calling it again returns the same figure.
func sampleConnections(s *pgtest.Server) func() int {
	quit, done := make(chan struct{}), make(chan struct{})
	most := 0
	go func() {
		defer close(done)
		db, err := sql.Open("pgx", s.URL("postgres"))
		if err != nil {
			return
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		for t := time.NewTicker(100 * time.Millisecond); ; {
			var k int
			if db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, clusterDB).Scan(&k) == nil {
				most = max(most, k)
			}
			select {
			case <-quit:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() int {
		once.Do(func() { close(quit); <-done })
		return most
	}
}
