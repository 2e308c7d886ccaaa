package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
)

// clusterDeps are the parts of a clustered node that other packages
// provide: the lease keeper (package lease), this node's manager with its
// Adopt, Release and Hosted, and the Postgres registry of sessions.
type clusterDeps struct {
	Leases   cluster.Leases
	Local    cluster.Local
	Registry cluster.Registry
}

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

// clusterOptions are cluster.Options from the configuration and deps.
func clusterOptions(cfg config.Config, deps clusterDeps, log *slog.Logger, reg prometheus.Registerer) (cluster.Options, error) {
	if deps.Leases == nil || deps.Local == nil || deps.Registry == nil {
		return cluster.Options{}, errors.New("CLUSTER is set, but this build does not wire the lease keeper, the node's manager and the Postgres registry into the cluster yet")
	}
	var provider protocluster.ClusterProvider
	switch cfg.Cluster {
	case config.ClusterEtcd:
		p, err := cluster.EtcdProvider(cfg.EtcdEndpointList())
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
