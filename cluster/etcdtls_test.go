package cluster_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/testcerts"
)

// TestEtcdOverTLS: against an etcd that serves https and requires client
// certificates (ETCD_TLS_CA, ETCD_TLS_CERT, ETCD_TLS_KEY through
// LoadEtcdTLS), members with the CA and a client certificate join and see
// each other; a member that does not trust etcd's CA, or has no client
// certificate, fails to start with an error that names the TLS settings.
func TestEtcdOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	etcd := etcdtest.StartTLS(t, ca)
	cert, key, err := ca.Node(filepath.Join(dir, "member"), "member")
	if err != nil {
		t.Fatal(err)
	}
	options := func(caFile, certFile, keyFile string) func() (cluster.EtcdOptions, error) {
		return func() (cluster.EtcdOptions, error) {
			tlsConfig, err := cluster.LoadEtcdTLS(caFile, certFile, keyFile)
			return cluster.EtcdOptions{Endpoints: []string{etcd.Endpoint}, TLS: tlsConfig}, err
		}
	}
	d := newDB(ids(8)...)
	o := memberOpts{provider: etcdProviderWith(t, options(ca.File, cert, key))}
	a := startMember(t, d, "a", o)
	b := startMember(t, d, "b", o)
	waitMembers(t, 2, a, b)

	other, err := testcerts.NewCA(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts func() (cluster.EtcdOptions, error)
	}{
		{"another CA", options(other.File, cert, key)},
		{"no client certificate", options(ca.File, "", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := cluster.Start(cluster.Options{
				Name: "c", Addr: freeaddr.For(t), Provider: etcdProviderWith(t, tc.opts)(),
				Leases: leases{d: d, name: "c"}, Local: newLocal(d, "c"), Registry: d,
				RequestTimeout: 2 * time.Second, Log: testLog(t, "c"),
			})
			if err == nil {
				n.Close()
				t.Fatal("a member started with TLS settings etcd refuses")
			}
			t.Logf("refused: %v", err)
			if msg := err.Error(); !strings.Contains(msg, "ETCD_TLS_CA") {
				t.Errorf("error %q, want one naming the TLS settings to check", msg)
			}
		})
	}
	waitMembers(t, 2, a, b)
}
