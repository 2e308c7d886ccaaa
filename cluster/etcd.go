package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// EtcdProvider is membership in etcd at endpoints (CLUSTER=etcd). The
// client connects when the member starts.
func EtcdProvider(endpoints []string) (protocluster.ClusterProvider, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	return &etcdProvider{cfg: clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second}, ttl: memberTTL}, nil
}

// StartMember registers this member and follows the others.
func (p *etcdProvider) StartMember(c *protocluster.Cluster) error { return p.start(c, true) }

// StartClient follows the members without registering.
func (p *etcdProvider) StartClient(c *protocluster.Cluster) error { return p.start(c, false) }

func (p *etcdProvider) start(c *protocluster.Cluster, register bool) error {
	p.log = c.Logger()
	client, err := clientv3.New(p.cfg)
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.client, p.cancel = client, cancel
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
