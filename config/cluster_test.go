package config_test

import (
	"os"
	"path/filepath"
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

// TestEtcdCredentials: ETCD_USERNAME with ETCD_PASSWORD or
// ETCD_PASSWORD_FILE (not both), ETCD_TLS_* only for https endpoints; no
// error shows the username or the password.
func TestEtcdCredentials(t *testing.T) {
	const user, secret = "etcd-user-7f3a", "s3cret-9c1d"
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "etcd-password")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"STORE": "postgres", "DATABASE_URL": "postgres://db/ws", "CLUSTER": "etcd", "ETCD_ENDPOINTS": "http://etcd:2379",
		"CLUSTER_ADDR": "10.0.0.5:7000", "NODE_NAME": "n1", "CLUSTER_INSECURE": "true",
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string // "" for accepted
		wantPwd string // the password Load read, when accepted
	}{
		{"password", map[string]string{"ETCD_USERNAME": user, "ETCD_PASSWORD": secret}, "", secret},
		{"password file", map[string]string{"ETCD_USERNAME": user, "ETCD_PASSWORD_FILE": pwFile}, "", secret},
		{"https, CA and client certificate", map[string]string{"ETCD_ENDPOINTS": "https://etcd:2379", "ETCD_TLS_CA": "ca.pem", "ETCD_TLS_CERT": "c.pem", "ETCD_TLS_KEY": "k.pem"}, "", ""},
		{"https, system roots", map[string]string{"ETCD_ENDPOINTS": "https://etcd:2379"}, "", ""},
		{"both passwords", map[string]string{"ETCD_USERNAME": user, "ETCD_PASSWORD": secret, "ETCD_PASSWORD_FILE": pwFile}, "ETCD_PASSWORD and ETCD_PASSWORD_FILE are both set", ""},
		{"missing file", map[string]string{"ETCD_USERNAME": user, "ETCD_PASSWORD_FILE": filepath.Join(dir, "none")}, "ETCD_PASSWORD_FILE", ""},
		{"empty file", map[string]string{"ETCD_USERNAME": user, "ETCD_PASSWORD_FILE": empty}, "is empty", ""},
		{"username alone", map[string]string{"ETCD_USERNAME": user}, "ETCD_USERNAME needs ETCD_PASSWORD", ""},
		{"password alone", map[string]string{"ETCD_PASSWORD": secret}, "ETCD_PASSWORD needs ETCD_USERNAME", ""},
		{"credentials in the URL", map[string]string{"ETCD_ENDPOINTS": "http://" + user + ":" + secret + "@etcd:2379"}, "holds credentials", ""},
		{"not a URL", map[string]string{"ETCD_ENDPOINTS": "etcd:2379"}, "is not an http:// or https:// URL", ""},
		{"tls on http", map[string]string{"ETCD_TLS_CA": "ca.pem"}, "for https:// ETCD_ENDPOINTS", ""},
		{"half client certificate", map[string]string{"ETCD_ENDPOINTS": "https://etcd:2379", "ETCD_TLS_CERT": "c.pem"}, "ETCD_TLS_CERT and ETCD_TLS_KEY go together", ""},
		{"mixed schemes", map[string]string{"ETCD_ENDPOINTS": "https://a:2379,http://b:2379"}, "mixes http:// and https://", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := loadWith(t, env)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.EtcdPassword != tc.wantPwd {
					t.Fatalf("password read %q, want %q", c.EtcdPassword, tc.wantPwd)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), user) {
				t.Fatalf("the error shows a credential: %v", err)
			}
		})
	}
}
