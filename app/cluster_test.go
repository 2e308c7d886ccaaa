package app_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
)

// Until the wiring round connects the lease keeper, the manager's moves
// and the Postgres registry, CLUSTER set stops the start with a clear
// error instead of running a node that cannot place anything.
func TestClusterNeedsItsParts(t *testing.T) {
	cfg := e2e.Config(t.TempDir(), nil)
	cfg.Store, cfg.Cluster, cfg.EtcdEndpoints = "postgres", "etcd", "http://127.0.0.1:1"
	cfg.ClusterAddr, cfg.ClusterAdvertise, cfg.NodeName, cfg.ClusterInsecure = "127.0.0.1:0", "127.0.0.1:1", "n1", true
	cfg.LeaseTTL = 15 * time.Second
	_, err := app.New(cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "lease keeper") {
		t.Fatalf("New with CLUSTER=etcd: %v", err)
	}
}
