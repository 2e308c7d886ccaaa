package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The CLUSTER modes.
const (
	ClusterNone   = "none"
	ClusterEtcd   = "etcd"
	ClusterStatic = "static"
)

// Clustered says whether this node is one of several (CLUSTER is set and
// not none).
func (c Config) Clustered() bool { return c.Cluster != "" && c.Cluster != ClusterNone }

// EtcdEndpointList is EtcdEndpoints' URLs, without blanks.
func (c Config) EtcdEndpointList() []string { return splitList(c.EtcdEndpoints) }

// ClusterPeerList is ClusterPeers' host:port entries, without blanks.
func (c Config) ClusterPeerList() []string { return splitList(c.ClusterPeers) }

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// validateCluster reports every CLUSTER* setting that cannot work. With
// CLUSTER none (or unset, in a literal Config) the other cluster settings
// are ignored.
func (c Config) validateCluster() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// Leases exist with the Postgres store, clustered or not.
	if (c.Store == "postgres" || c.Clustered()) && c.LeaseTTL < 3*time.Second {
		bad("LEASE_TTL must be at least 3s (renewed every third of it), got %v", c.LeaseTTL)
	}
	switch c.Cluster {
	case "", ClusterNone:
		return errs
	case ClusterEtcd, ClusterStatic:
	default:
		bad("CLUSTER must be none, etcd or static, got %q", c.Cluster)
		return errs
	}
	if c.Store != "postgres" {
		bad("CLUSTER=%s needs STORE=postgres: the nodes share the sessions and their leases in one database", c.Cluster)
	}
	if c.Cluster == ClusterEtcd {
		errs = append(errs, c.validateEtcd()...)
	}
	if c.Cluster == ClusterStatic {
		peers := c.ClusterPeerList()
		if len(peers) == 0 {
			bad("CLUSTER=static needs CLUSTER_PEERS (every node's host:CLUSTER_STATIC_PORT, comma-separated)")
		}
		for _, p := range peers {
			if _, _, err := splitHostPort(p); err != nil {
				bad("CLUSTER_PEERS entry %q is not host:port", p)
			}
		}
		if c.ClusterStaticPort < 1 || c.ClusterStaticPort > 65535 {
			bad("CLUSTER_STATIC_PORT must be a port (1-65535), got %d", c.ClusterStaticPort)
		}
	}
	if strings.TrimSpace(c.NodeName) == "" {
		bad("NODE_NAME must not be empty (and the host name is unknown)")
	}
	_, port, err := splitHostPort(c.ClusterAddr)
	if err != nil {
		bad("CLUSTER_ADDR must be host:port (where this node's cluster port listens), got %q", c.ClusterAddr)
	}
	if c.ClusterAdvertise != "" {
		if h, p, err := splitHostPort(c.ClusterAdvertise); err != nil || h == "" || p == 0 {
			bad("CLUSTER_ADVERTISE must be host:port (what the other nodes dial), got %q", c.ClusterAdvertise)
		}
	}
	if _, apiPort, err := splitHostPort(c.HTTPAddr); err == nil && port != 0 && apiPort == port {
		bad("CLUSTER_ADDR's port %d is HTTP_ADDR's: the cluster port is never the API's", port)
	}
	if c.Cluster == ClusterStatic && port != 0 && c.ClusterStaticPort == port {
		bad("CLUSTER_STATIC_PORT %d is CLUSTER_ADDR's port", port)
	}
	n := 0
	for _, f := range []string{c.ClusterTLSCert, c.ClusterTLSKey, c.ClusterTLSCA} {
		if f != "" {
			n++
		}
	}
	switch {
	case n != 0 && n != 3:
		bad("CLUSTER_TLS_CERT, CLUSTER_TLS_KEY and CLUSTER_TLS_CA go together (this node's certificate, its key, and the CA that signs every node's)")
	case n == 0 && !c.ClusterInsecure:
		bad("CLUSTER=%s needs CLUSTER_TLS_CERT, CLUSTER_TLS_KEY and CLUSTER_TLS_CA, or CLUSTER_INSECURE=true to say the nodes share a private network nothing else reaches", c.Cluster)
	case n == 3 && c.ClusterInsecure:
		bad("CLUSTER_INSECURE=true contradicts CLUSTER_TLS_*: set one or the other")
	}
	return errs
}

// validateEtcd reports every ETCD_* setting that cannot work. Its errors
// name the settings, never the username or the password.
func (c Config) validateEtcd() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	endpoints := c.EtcdEndpointList()
	if len(endpoints) == 0 {
		bad("CLUSTER=etcd needs ETCD_ENDPOINTS (comma-separated URLs, such as http://etcd:2379)")
	}
	https := false
	for _, e := range endpoints {
		u, err := url.Parse(e)
		switch {
		case strings.Contains(e, "@"): // user:password@host, not repeated here
			bad("an ETCD_ENDPOINTS entry holds credentials: set ETCD_USERNAME and ETCD_PASSWORD instead")
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			bad("ETCD_ENDPOINTS entry %q is not an http:// or https:// URL", e)
		case u.Scheme == "https":
			https = true
		}
	}
	hasPassword := c.EtcdPassword != "" || c.EtcdPasswordFile != ""
	switch {
	case c.EtcdUsername != "" && !hasPassword:
		bad("ETCD_USERNAME needs ETCD_PASSWORD (or ETCD_PASSWORD_FILE, a file holding it)")
	case c.EtcdUsername == "" && hasPassword:
		bad("ETCD_PASSWORD needs ETCD_USERNAME")
	}
	if (c.EtcdTLSCert == "") != (c.EtcdTLSKey == "") {
		bad("ETCD_TLS_CERT and ETCD_TLS_KEY go together (this node's client certificate for etcd and its key)")
	}
	if !https && (c.EtcdTLSCA != "" || c.EtcdTLSCert != "" || c.EtcdTLSKey != "") {
		bad("ETCD_TLS_CA, ETCD_TLS_CERT and ETCD_TLS_KEY are for https:// ETCD_ENDPOINTS, and none is https")
	}
	if https && slices.ContainsFunc(endpoints, func(e string) bool { return strings.HasPrefix(e, "http://") }) {
		bad("ETCD_ENDPOINTS mixes http:// and https://: use one scheme")
	}
	return errs
}

// readEtcdPasswordFile reads EtcdPassword from EtcdPasswordFile, if set.
// An error names the file, never its content.
func (c *Config) readEtcdPasswordFile() error {
	if c.EtcdPasswordFile == "" {
		return nil
	}
	if c.EtcdPassword != "" {
		return errors.New("ETCD_PASSWORD and ETCD_PASSWORD_FILE are both set: set one")
	}
	b, err := os.ReadFile(c.EtcdPasswordFile)
	if err != nil {
		return fmt.Errorf("ETCD_PASSWORD_FILE: %w", err)
	}
	// One trailing newline (an editor's, echo's) is not the password's.
	c.EtcdPassword = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if c.EtcdPassword == "" {
		return fmt.Errorf("ETCD_PASSWORD_FILE %s is empty", c.EtcdPasswordFile)
	}
	return nil
}

// splitHostPort splits host:port and parses the port.
func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, n, nil
}
