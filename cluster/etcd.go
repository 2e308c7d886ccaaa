package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// etcdProvider is cluster membership in etcd (CLUSTER=etcd): each member
// puts its address and kinds under /whatsapp-sessions/members/ on an etcd
// lease of memberTTL that it keeps alive, and watches the prefix. A killed
// member's key expires with its lease; a member that stops revokes it.
//
// It replaces protoactor-go's clusterproviders/etcd, which at the pinned
// version reads and writes its shutdown flag from several goroutines
// without synchronisation (go test -race fails), never closes its etcd
// client, and cannot stop its keep-alive loop (goroutines leak).
type etcdProvider struct {
	cfg clientv3.Config
	ttl time.Duration
	log *slog.Logger

	// client and cancel are set before any goroutine starts and never
	// change; mu guards lease and stopped.
	client  *clientv3.Client
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	lease   clientv3.LeaseID
	stopped bool
}

// memberTTL is how long a killed member stays in the topology.
const memberTTL = 3 * time.Second

// etcdPrefix is where the members' keys live.
const etcdPrefix = "/" + Name + "/members/"

// etcdMember is a member's value in etcd.
type etcdMember struct {
	ID    string   `json:"id"`
	Host  string   `json:"host"`
	Port  int32    `json:"port"`
	Kinds []string `json:"kinds"`
}

// EtcdOptions say how a member reaches etcd.
type EtcdOptions struct {
	// Endpoints are etcd's client URLs (http:// or https://).
	Endpoints []string
	// Username and Password authenticate to etcd when Username is set
	// (etcd's auth enabled, a user whose role may read and write the
	// members' prefix). Neither appears in a log or an error.
	Username string
	Password string
	// TLS is the client's TLS for https endpoints (LoadEtcdTLS); nil with
	// an https endpoint trusts the system's roots.
	TLS *tls.Config
}

// EtcdProvider is membership in etcd (CLUSTER=etcd). The client connects
// when the member starts.
func EtcdProvider(o EtcdOptions) (protocluster.ClusterProvider, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if (o.Username == "") != (o.Password == "") {
		return nil, errors.New("etcd: a username and a password go together")
	}
	cfg := clientv3.Config{
		Endpoints: o.Endpoints, DialTimeout: 5 * time.Second,
		Username: o.Username, Password: o.Password, TLS: o.TLS,
		// Connect before the member starts, and say why not: a TLS
		// handshake etcd refused, rather than a later "deadline exceeded".
		DialOptions: []grpc.DialOption{grpc.WithBlock(), grpc.WithReturnConnectionError()}, //nolint:staticcheck // the pinned gRPC's way to get the dial's error
	}
	if cfg.TLS == nil && slices.ContainsFunc(o.Endpoints, isHTTPS) {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &etcdProvider{cfg: cfg, ttl: memberTTL}, nil
}

func isHTTPS(endpoint string) bool { return strings.HasPrefix(strings.ToLower(endpoint), "https://") }

// LoadEtcdTLS is the client TLS for https etcd endpoints from PEM files:
// caFile, when set, is the CA that signs etcd's server certificate (else
// the system's roots); certFile and keyFile, both or neither, are this
// node's client certificate for etcd's client-certificate auth.
func LoadEtcdTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("etcd client certificate: a certificate and its key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// StartMember registers this member and follows the others.
func (p *etcdProvider) StartMember(c *protocluster.Cluster) error { return p.start(c, true) }

// StartClient follows the members without registering.
func (p *etcdProvider) StartClient(c *protocluster.Cluster) error { return p.start(c, false) }

// start connects, registers when asked, and follows the members. On an
// error it leaves nothing running: the client closed, no goroutine.
func (p *etcdProvider) start(c *protocluster.Cluster, register bool) (err error) {
	p.log = c.Logger()
	client, err := clientv3.New(p.cfg)
	if err != nil {
		return fmt.Errorf("etcd at %s: %w", strings.Join(p.cfg.Endpoints, ","), hint(err, p.cfg.TLS != nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.client, p.cancel = client, cancel
	defer func() {
		if err != nil {
			p.mu.Lock()
			p.stopped = true
			p.mu.Unlock()
			cancel()
			p.wg.Wait()
			_ = client.Close()
			err = fmt.Errorf("etcd at %s: %w", strings.Join(p.cfg.Endpoints, ","), hint(err, p.cfg.TLS != nil))
		}
	}()
	if register {
		host, port, err := c.ActorSystem.GetHostPort()
		if err != nil {
			return err
		}
		self := etcdMember{ID: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
		if err := p.register(ctx, self); err != nil {
			return err
		}
	}
	rev, err := p.publish(ctx, c)
	if err != nil {
		return err
	}
	p.wg.Add(1)
	go p.watch(ctx, c, rev)
	return nil
}

// hint says which setting to check when etcd refused the credentials or
// their permissions (etcd's own words name neither the user nor the
// password), or, with TLS on, the TLS handshake.
func hint(err error, tlsOn bool) error {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("check ETCD_USERNAME and ETCD_PASSWORD: %w", err)
	case errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return fmt.Errorf("etcd requires authentication: set ETCD_USERNAME and ETCD_PASSWORD: %w", err)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("the etcd user's role must grant read and write on %s: %w", etcdPrefix, err)
	case tlsOn && isTLSError(err):
		return fmt.Errorf("check ETCD_TLS_CA (the CA that signs etcd's certificate) and ETCD_TLS_CERT/ETCD_TLS_KEY (this node's client certificate, when etcd asks for one): %w", err)
	}
	return err
}

// isTLSError reports whether err looks like a TLS handshake that failed:
// a server certificate not trusted, or a client certificate refused (in
// TLS 1.3 the server may close the connection before the client reads its
// alert: a broken pipe, a reset or an early end right after connecting).
// gRPC reports it only as text in its connection error.
func isTLSError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"tls: ", "x509: ", "authentication handshake failed", "error reading server preface", "broken pipe", "connection reset by peer"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// register puts self on a fresh lease and keeps the lease alive until ctx
// ends, registering again if the lease is lost (etcd restarted, a long
// partition).
func (p *etcdProvider) register(ctx context.Context, self etcdMember) error {
	val, err := json.Marshal(self)
	if err != nil {
		return err
	}
	key := etcdPrefix + self.ID
	put := func() (<-chan *clientv3.LeaseKeepAliveResponse, error) {
		tctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		defer cancel()
		lease, err := p.client.Grant(tctx, int64(p.ttl/time.Second))
		if err != nil {
			return nil, fmt.Errorf("etcd lease: %w", err)
		}
		if _, err := p.client.Put(tctx, key, string(val), clientv3.WithLease(lease.ID)); err != nil {
			return nil, fmt.Errorf("etcd register: %w", err)
		}
		p.mu.Lock()
		p.lease = lease.ID
		p.mu.Unlock()
		return p.client.KeepAlive(ctx, lease.ID)
	}
	ka, err := put()
	if err != nil {
		return err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			for range ka { // drain; closes when the lease is lost or ctx ends
			}
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("etcd: membership lease lost, registering again")
			for {
				var err error
				if ka, err = put(); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return nil
}

// publish reads every member and hands the topology to protoactor; it
// returns the revision read.
func (p *etcdProvider) publish(ctx context.Context, c *protocluster.Cluster) (int64, error) {
	tctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	resp, err := p.client.Get(tctx, etcdPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("etcd members: %w", err)
	}
	var ms protocluster.Members
	for _, kv := range resp.Kvs {
		var m etcdMember
		if err := json.Unmarshal(kv.Value, &m); err != nil || !strings.HasSuffix(string(kv.Key), "/"+m.ID) {
			p.log.Warn("etcd: an undecodable member", "key", string(kv.Key))
			continue
		}
		ms = append(ms, &protocluster.Member{Id: m.ID, Host: m.Host, Port: m.Port, Kinds: m.Kinds})
	}
	c.MemberList.UpdateClusterTopology(ms)
	return resp.Header.Revision, nil
}

// watch publishes the topology again on every change under the prefix.
func (p *etcdProvider) watch(ctx context.Context, c *protocluster.Cluster, rev int64) {
	defer p.wg.Done()
	for ctx.Err() == nil {
		for resp := range p.client.Watch(clientv3.WithRequireLeader(ctx), etcdPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			if r, err := p.publish(ctx, c); err == nil {
				rev = r
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			if r, err := p.publish(ctx, c); err == nil {
				rev = r
			}
		}
	}
}

// Shutdown revokes this member's lease (its key goes at once), stops
// following, and closes the client.
func (p *etcdProvider) Shutdown(bool) error {
	p.mu.Lock()
	stopped, lease := p.stopped, p.lease
	p.stopped = true
	p.mu.Unlock()
	if stopped || p.client == nil {
		return nil
	}
	var err error
	if lease != 0 {
		ctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = p.client.Revoke(ctx, lease)
		c()
	}
	p.cancel()
	p.wg.Wait()
	return errors.Join(err, p.client.Close())
}
