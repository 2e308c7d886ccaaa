package app

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
)

// clusterDeps are the parts of a clustered node that other packages
// provide: the lease keeper (package lease), this node's manager with its
// Adopt, Release and Hosted, and the Postgres registry of sessions.
type clusterDeps struct {
	Leases   cluster.Leases
	Local    cluster.Local
	Registry cluster.Registry
}

// renewPoolConns is the size of the lease renewals' own pool.
const renewPoolConns = 2

// leaseKeeper makes this node's lease keeper on the shared pool, with a
// small pool of its own for renewals (a renewal must not queue behind the
// store queries of thousands of logins: waiting past TTL/2 costs the node
// every lease): the manager's Gate, renewing in the background from
// runKeeper until the App closes, after the manager stopped (its sessions
// release their leases on the way down). A lost lease disconnects its
// session at once.
func (a *App) leaseKeeper(db *sql.DB, m *metrics.Metrics) (*lease.Keeper, error) {
	var address string
	if a.cfg.Clustered() {
		address = a.cfg.ClusterAdvertise
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	renewDB, err := pgstore.Open(ctx, a.cfg.DatabaseURL, pgstore.PoolOptions{MaxConns: renewPoolConns})
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: lease renewals: %w", err)
	}
	// Registered before the keeper's stop below, so closed after it.
	a.onClose(func(context.Context) error { return renewDB.Close() })
	k := lease.New(db, lease.Options{
		Node: a.cfg.NodeName, Address: address, TTL: a.cfg.LeaseTTL,
		OnLost:  func(ids []string) { a.mgr.LeasesLost(ids) },
		Log:     a.log.With("component", "lease"),
		Metrics: m,
		RenewDB: renewDB,
	})
	runCtx, stop := context.WithCancel(context.Background())
	a.keeperCtx = runCtx
	a.onClose(func(context.Context) error {
		stop()
		a.keeperDone.Wait()
		return nil
	})
	return k, nil
}

// ownedElsewhere is the manager's OwnedElsewhere in a cluster: a session
// refused by another live node's lease tells that node, which hands the
// session over at once or says where it belongs (see
// cluster.Node.OwnedElsewhere). A dead or leaving holder is not told: its
// lease expires, or its hand-over comes.
func (a *App) ownedElsewhere(id string, refusal error) bool {
	var oe *lease.OwnedElsewhereError
	node := a.node.Load()
	if node == nil || !errors.As(refusal, &oe) || !oe.Live || oe.Node == a.cfg.NodeName {
		return false
	}
	return node.OwnedElsewhere(id, oe.Address)
}

// runKeeper starts k's renewals (once the manager exists: they may tell
// it of lost leases).
func (a *App) runKeeper(k *lease.Keeper) {
	a.keeperDone.Add(1)
	go func() {
		defer a.keeperDone.Done()
		_ = k.Run(a.keeperCtx)
	}()
}

// clusterLeases is a lease.Keeper as the cluster's placement needs it.
type clusterLeases struct{ *lease.Keeper }

// Holders maps each of ids whose lease is held (live or not) to its
// owner's name.
func (l clusterLeases) Holders(ctx context.Context, ids []string) (map[string]string, error) {
	hs, err := l.Keeper.Holders(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(hs))
	for id, h := range hs {
		out[id] = h.Node
	}
	return out, nil
}

// Eligible lists the live nodes that are not leaving.
func (l clusterLeases) Eligible(ctx context.Context) ([]cluster.Peer, error) {
	ns, err := l.Keeper.Eligible(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]cluster.Peer, len(ns))
	for i, n := range ns {
		out[i] = cluster.Peer{Name: n.Name, Address: n.Address}
	}
	return out, nil
}

// testLocal is the node's manager with its test driver, in test mode: a
// test action asked of any node runs where the session is hosted.
type testLocal struct {
	*actors.Manager
	*testmode.Driver
}

// Act runs a test action on a session hosted here.
func (l testLocal) Act(ctx context.Context, id, action string, params sessions.TestParams) (any, error) {
	return l.Driver.Act(ctx, id, action, params)
}

var (
	_ cluster.Leases   = clusterLeases{}
	_ cluster.Local    = testLocal{}
	_ cluster.Registry = (*pgstore.Registry)(nil)
)

// metricsRegisterer is where the service's series go: the registry itself
// on a single node; in a cluster, the registry with a constant label
// node=NODE_NAME on every series, so that one Prometheus scraping every
// node tells them apart without relabelling.
func metricsRegisterer(cfg config.Config, reg *prometheus.Registry) prometheus.Registerer {
	if !cfg.Clustered() {
		return reg
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.NodeName}, reg)
}

// Sessions that are up move between nodes (handed over by a node that is
// no longer their placement, to a returning node say) moveBatch at a time,
// movePause apart: a node coming back takes its share in small steps, not
// in one storm of disconnects and logins. A SIGTERM hands over in batches
// of moveBatch without pause.
const (
	moveBatch = 25
	movePause = 500 * time.Millisecond
)

// clusterOptions are cluster.Options from the configuration and deps.
func clusterOptions(cfg config.Config, deps clusterDeps, log *slog.Logger, reg prometheus.Registerer) (cluster.Options, error) {
	if deps.Leases == nil || deps.Local == nil || deps.Registry == nil {
		return cluster.Options{}, errors.New("CLUSTER needs the lease keeper, the node's manager and the Postgres registry")
	}
	var provider protocluster.ClusterProvider
	switch cfg.Cluster {
	case config.ClusterEtcd:
		eo := cluster.EtcdOptions{Endpoints: cfg.EtcdEndpointList(), Username: cfg.EtcdUsername, Password: cfg.EtcdPassword}
		if cfg.EtcdTLSCA != "" || cfg.EtcdTLSCert != "" {
			var err error
			if eo.TLS, err = cluster.LoadEtcdTLS(cfg.EtcdTLSCA, cfg.EtcdTLSCert, cfg.EtcdTLSKey); err != nil {
				return cluster.Options{}, err
			}
		}
		p, err := cluster.EtcdProvider(eo)
		if err != nil {
			return cluster.Options{}, err
		}
		provider = p
	case config.ClusterStatic:
		provider = cluster.StaticProvider(cfg.ClusterPeerList(), cfg.ClusterStaticPort)
	default:
		return cluster.Options{}, fmt.Errorf("CLUSTER=%s has no provider", cfg.Cluster)
	}
	var tlsCfg *tls.Config
	if !cfg.ClusterInsecure {
		var err error
		if tlsCfg, err = cluster.LoadTLS(cfg.ClusterTLSCert, cfg.ClusterTLSKey, cfg.ClusterTLSCA); err != nil {
			return cluster.Options{}, err
		}
	}
	return cluster.Options{
		Name: cfg.NodeName, Addr: cfg.ClusterAddr, Advertise: cfg.ClusterAdvertise,
		Provider: provider, TLS: tlsCfg,
		Leases: deps.Leases, Local: deps.Local, Registry: deps.Registry,
		RequestTimeout: cfg.RequestTimeout,
		SweepEvery:     cfg.LeaseTTL / 3,
		BatchSize:      moveBatch,
		BatchPause:     movePause,
		Log:            log,
		Registerer:     reg,
	}, nil
}

// joinCluster starts this node as a member; its shutdown (hand every
// session over, then leave) is registered to run before the manager's.
func (a *App) joinCluster(cfg config.Config, deps clusterDeps, reg prometheus.Registerer) (*cluster.Node, error) {
	opts, err := clusterOptions(cfg, deps, a.log, reg)
	if err != nil {
		return nil, err
	}
	node, err := cluster.Start(opts)
	if err != nil {
		return nil, err
	}
	a.onClose(func(ctx context.Context) error { return node.Shutdown(ctx) })
	return node, nil
}
