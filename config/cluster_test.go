package config_test

import (
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
)

func TestClusterSettings(t *testing.T) {
	good := map[string]string{
		"STORE": "postgres", "DATABASE_URL": "postgres://db/ws", "CLUSTER": "etcd", "ETCD_ENDPOINTS": "http://etcd:2379",
		"CLUSTER_ADDR": "10.0.0.5:7000", "NODE_NAME": "n1", "CLUSTER_INSECURE": "true",
	}
	with := func(changes map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range good {
			env[k] = v
		}
		for k, v := range changes {
			env[k] = v
		}
		return env
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" for accepted
	}{
		{"etcd", good, ""},
		{"static", with(map[string]string{"CLUSTER": "static", "CLUSTER_PEERS": "a:6330, b:6330"}), ""},
		{"tls", with(map[string]string{"CLUSTER_INSECURE": "", "CLUSTER_TLS_CERT": "c", "CLUSTER_TLS_KEY": "k", "CLUSTER_TLS_CA": "ca"}), ""},
		{"unknown mode", with(map[string]string{"CLUSTER": "k8s"}), "CLUSTER must be none, etcd or static"},
		{"sqlite", with(map[string]string{"STORE": "sqlite"}), "needs STORE=postgres"},
		{"no endpoints", with(map[string]string{"ETCD_ENDPOINTS": ""}), "needs ETCD_ENDPOINTS"},
		{"no peers", with(map[string]string{"CLUSTER": "static"}), "needs CLUSTER_PEERS"},
		{"bad peer", with(map[string]string{"CLUSTER": "static", "CLUSTER_PEERS": "a"}), `CLUSTER_PEERS entry "a"`},
		{"no addr", with(map[string]string{"CLUSTER_ADDR": ""}), "CLUSTER_ADDR must be host:port"},
		{"all interfaces without advertise", with(map[string]string{"CLUSTER_ADDR": ":7000"}), "CLUSTER_ADVERTISE must be host:port"},
		{"all interfaces, advertised", with(map[string]string{"CLUSTER_ADDR": ":7000", "CLUSTER_ADVERTISE": "n1.internal:7000"}), ""},
		{"api port", with(map[string]string{"CLUSTER_ADDR": "10.0.0.5:8080"}), "never the API's"},
		{"static port", with(map[string]string{"CLUSTER": "static", "CLUSTER_PEERS": "a:7000", "CLUSTER_STATIC_PORT": "7000"}), "CLUSTER_STATIC_PORT 7000 is CLUSTER_ADDR's port"},
		{"plaintext not said", with(map[string]string{"CLUSTER_INSECURE": ""}), "or CLUSTER_INSECURE=true"},
		{"half tls", with(map[string]string{"CLUSTER_INSECURE": "", "CLUSTER_TLS_CERT": "c"}), "go together"},
		{"tls and insecure", with(map[string]string{"CLUSTER_TLS_CERT": "c", "CLUSTER_TLS_KEY": "k", "CLUSTER_TLS_CA": "ca"}), "contradicts"},
		{"short ttl", with(map[string]string{"LEASE_TTL": "1s"}), "LEASE_TTL must be at least 3s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadWith(t, tc.env)
			if tc.want == "" {
				if err != nil || !c.Clustered() {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestClusterDefaults(t *testing.T) {
	c, err := loadWith(t, map[string]string{"STORE": "postgres", "DATABASE_URL": "postgres://db/ws", "CLUSTER": "static", "CLUSTER_PEERS": "a:6330",
		"CLUSTER_ADDR": "10.0.0.5:7000", "CLUSTER_INSECURE": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterAdvertise != "10.0.0.5:7000" || c.NodeName == "" || c.ClusterStaticPort != 6330 || c.LeaseTTL != lease.DefaultTTL {
		t.Errorf("defaults: advertise %q, node %q, static port %d, ttl %v", c.ClusterAdvertise, c.NodeName, c.ClusterStaticPort, c.LeaseTTL)
	}
	if d, err := loadWith(t, map[string]string{"CLUSTER": ""}); err != nil || d.Clustered() {
		t.Errorf("default CLUSTER: clustered %v, %v", d.Clustered(), err)
	}
}
