package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

func TestStaticPeers(t *testing.T) {
	all := ids(8)
	d := newDB(all...)
	ports := []int{freePort(t), freePort(t)}
	peers := []string{"127.0.0.1:" + strconv.Itoa(ports[0]), "127.0.0.1:" + strconv.Itoa(ports[1])}
	reg := prometheus.NewRegistry()
	static := func(port int) memberOpts {
		return memberOpts{provider: func() protocluster.ClusterProvider { return cluster.StaticProvider(peers, port) }}
	}
	ao := static(ports[0])
	ao.reg = reg
	a := startMember(t, d, "a", ao)
	b := startMember(t, d, "b", static(ports[1]))
	waitMembers(t, 2, a, b)
	if n := gaugeValue(t, reg, "whatsapp_cluster_members"); n != 2 {
		t.Errorf("whatsapp_cluster_members %v, want 2", n)
	}
	allHeld(t, d, all, "a", "b")
	ctx := context.Background()
	for _, id := range all {
		st, err := a.svc.Status(ctx, id)
		if err != nil || *st.PushName != d.holder(id) {
			t.Errorf("status of %s from a: %v, %v (held by %s)", id, st.PushName, err, d.holder(id))
		}
	}
	f, err := b.svc.Fleet(ctx)
	if err != nil || len(f.Sessions) != len(all) {
		t.Fatalf("fleet: %d sessions, %v", len(f.Sessions), err)
	}
	for _, st := range f.Sessions {
		if st.Node != d.holder(st.SenderID) {
			t.Errorf("%s: node %q, held by %s", st.SenderID, st.Node, d.holder(st.SenderID))
		}
	}
}

func TestTLSKeepsOutAMemberWithoutACASignedCertificate(t *testing.T) {
	etcd := etcdtest.Start(t)
	ca := newCA(t)
	all := ids(8)
	d := newDB(all...)
	o := func(cfg *tls.Config) memberOpts {
		return memberOpts{provider: etcdProvider(t, etcd.Endpoint), tls: cfg, timeout: 2 * time.Second}
	}
	a := startMember(t, d, "a", o(ca.config(t, ca)))
	b := startMember(t, d, "b", o(ca.config(t, ca)))
	waitMembers(t, 2, a, b)
	allHeld(t, d, all, "a", "b")

	// The rogue trusts the cluster's CA but presents a certificate of its
	// own CA; it registers in etcd (it has etcd's address) but its
	// connections fail the handshake both ways.
	rogueCA := newCA(t)
	rogueCfg := rogueCA.config(t, ca)
	ro := o(rogueCfg)
	ro.noDB = true
	rogue := startMember(t, d, "rogue", ro)
	waitMembers(t, 3, a, b, rogue)

	ctx := context.Background()
	for _, id := range all {
		st, err := a.svc.Status(ctx, id)
		if err != nil || *st.PushName != d.holder(id) {
			t.Fatalf("between CA-signed members, status of %s: %v %v", id, st.PushName, err)
		}
	}
	if _, err := rogue.svc.Status(ctx, all[0]); !errors.Is(err, sessions.ErrTimeout) {
		t.Errorf("the rogue's request: %v, want a timeout (no connection)", err)
	}
	f, err := a.svc.Fleet(ctx)
	if err != nil || len(f.Sessions) != len(all) {
		t.Fatalf("fleet with a rogue member: %d sessions, %v", len(f.Sessions), err)
	}
	if n := rogue.local.fleets.Load(); n != 0 {
		t.Errorf("the rogue's service was asked for its fleet %d times", n)
	}
	if h, _ := rogue.local.Hosted(ctx); len(h) != 0 {
		t.Errorf("the rogue hosts %v", h)
	}
}

// testCA signs member certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test cluster CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// config is a member's mutual-TLS configuration: a certificate this CA
// signed, trusting trust's CA.
func (ca *testCA) config(t *testing.T, trust *testCA) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.TLSConfig(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, trust.pem)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeaddr.For(t))
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(fmt.Errorf("port %q: %w", p, err))
	}
	return n
}

// gaugeValue is the value of reg's gauge name.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s in the registry", name)
	return 0
}
