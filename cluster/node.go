package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Kind is the grain kind of a session; a grain's identity is its senderId.
const Kind = "session"

// Name is the protoactor cluster's name: members of another name never
// meet.
const Name = "whatsapp-sessions"

// The names of a node's own actors, the same on every member so that any
// member can address them.
const (
	nodeActorName  = "ws-node"
	replyActorName = "ws-replies"
)

// Options configure a Node. Leases, Local, Registry and Provider are
// required.
type Options struct {
	// Name is this node's NODE_NAME, as the lease table knows it.
	Name string
	// Addr is the host:port the cluster port listens on; Advertise what
	// the other members dial (default Addr). Advertise must be the
	// address this node writes to ws_nodes: placement matches the two.
	Addr      string
	Advertise string
	// Provider is the membership: EtcdProvider or StaticProvider.
	Provider protocluster.ClusterProvider
	// TLS, from LoadTLS, makes every connection between members mutual
	// TLS with the shared CA; nil leaves them plaintext (a private
	// network, CLUSTER_INSECURE=true).
	TLS *tls.Config

	Leases   Leases
	Local    Local
	Registry Registry

	// RequestTimeout bounds a request to another node (REQUEST_TIMEOUT).
	RequestTimeout time.Duration
	// SweepEvery is the sweep's period (LEASE_TTL/3).
	SweepEvery time.Duration
	// BatchSize sessions are handed over at once, BatchPause apart; a
	// shutdown hands over in batches of BatchSize without pause. (Orphans,
	// which no node serves, are adopted all at once.)
	BatchSize  int
	BatchPause time.Duration

	// Log is the node's logger; Registerer, when set, gets the
	// membership gauge.
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Node is this process as a member of the cluster: its actor system,
// remote and protoactor cluster, its node actor, and the sweep.
type Node struct {
	opts    Options
	log     *slog.Logger
	system  *actor.ActorSystem
	cluster *protocluster.Cluster

	nodePID  *actor.PID
	replyPID *actor.PID
	seq      atomic.Uint64
	pending  sync.Map // request number -> chan reply

	// members are the addresses of the live members, from protoactor's
	// topology events (its MemberList reads them without its lock).
	membersMu sync.Mutex
	members   []string

	topoSub *eventstream.Subscription
	nudge   chan struct{}
	stop    context.CancelFunc
	swept   sync.WaitGroup
	metrics *nodeMetrics

	// claims are the OwnedElsewhere asks in flight, at most maxClaims
	// (claimSlots), under claimsCtx: ended with the sweep.
	claimsMu   sync.Mutex
	claimsCtx  context.Context
	claimSlots chan struct{}
	claims     sync.WaitGroup

	// adoptMu guards leaving, set by Shutdown: from then on this node
	// adopts nothing another node hands it; adopts counts the adoptions
	// under way, which Shutdown waits for before listing what it hosts.
	adoptMu sync.Mutex
	leaving bool
	adopts  sync.WaitGroup

	closeOnce sync.Once
}

// Start joins the cluster as a member: the actor system, the remote on
// Addr (mutual TLS when TLS is set), the provider's membership, the node
// actor, and the sweep. Stop it with Shutdown (hand everything over and
// leave) or Close (leave at once).
func Start(opts Options) (*Node, error) {
	if opts.Leases == nil || opts.Local == nil || opts.Registry == nil || opts.Provider == nil {
		return nil, errors.New("cluster: Leases, Local, Registry and Provider are required")
	}
	if opts.Name == "" {
		return nil, errors.New("cluster: the node needs a name")
	}
	host, port, err := splitAddr(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", opts.Addr, err)
	}
	if opts.Advertise == "" {
		opts.Advertise = opts.Addr
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = 5 * time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 50
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	n := &Node{opts: opts, log: opts.Log.With("node", opts.Name), nudge: make(chan struct{}, 1)}
	plog := n.log.With("component", "protoactor")
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return plog }))
	var ropts []remote.ConfigOption
	ropts = append(ropts, remote.WithAdvertisedHost(opts.Advertise))
	if opts.TLS != nil {
		creds := credentials.NewTLS(opts.TLS)
		ropts = append(ropts,
			remote.WithServerOptions(grpc.Creds(creds)),
			remote.WithDialOptions(grpc.WithTransportCredentials(creds)))
	}
	rcfg := remote.Configure(host, port, ropts...)
	kind := protocluster.NewKind(Kind, actor.PropsFromProducer(func() actor.Actor { return &grain{n: n} }))
	ccfg := protocluster.Configure(Name, opts.Provider, &lookup{n: n}, rcfg,
		protocluster.WithKinds(kind), protocluster.WithRequestTimeout(opts.RequestTimeout))
	n.cluster = protocluster.New(n.system, ccfg)
	if opts.Registerer != nil {
		m, err := newNodeMetrics(opts.Registerer, n)
		if err != nil {
			n.system.Shutdown()
			return nil, err
		}
		n.metrics = m
	}
	// Subscribed before joining, so that the first topology is seen.
	n.topoSub = n.system.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*protocluster.ClusterTopology); ok {
			addrs := make([]string, 0, len(t.Members))
			for _, m := range t.Members {
				addrs = append(addrs, m.Address())
			}
			n.membersMu.Lock()
			n.members = addrs
			n.membersMu.Unlock()
			n.poke()
		}
	})
	if err := startMember(n.cluster); err != nil {
		stopRemote(n.cluster)
		n.system.Shutdown()
		n.unregister()
		return nil, fmt.Errorf("join the cluster at %s: %w", opts.Advertise, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	n.claimsMu.Lock()
	n.claimsCtx, n.claimSlots = ctx, make(chan struct{}, maxClaims)
	n.claimsMu.Unlock()
	n.swept.Add(1)
	go n.sweepLoop(ctx)
	n.log.Info("joined the cluster", "address", opts.Advertise)
	return n, nil
}

// startMember is protoactor's StartMember, which panics when the remote
// cannot listen or the provider cannot register, as an error.
func startMember(c *protocluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	c.StartMember()
	return nil
}

// stopRemote stops the remote's gRPC server after a failed start (the
// provider refused: the server listens already), if it started at all.
func stopRemote(c *protocluster.Cluster) {
	defer func() { _ = recover() }() // never started: nothing to stop
	if c.Remote != nil {
		c.Remote.Shutdown(false)
	}
}

// Address is this member's address, as the other members dial it.
func (n *Node) Address() string { return n.system.Address() }

// Name is this node's NODE_NAME.
func (n *Node) Name() string { return n.opts.Name }

// Members lists the addresses of the cluster's live members, this one
// included.
func (n *Node) Members() []string {
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	return slices.Clone(n.members)
}

// Shutdown leaves the cluster gracefully: marks this node leaving (no
// longer eligible), hands every session it hosts over to its rendezvous
// choice among the other eligible nodes in quick batches, then leaves.
// Sessions that could not be handed over before ctx ends stay with their
// leases, which expire. Adoptions other nodes asked for before this node
// was leaving end first, so that what they brought is handed over too.
// Shutdown returns when nothing is hosted here any more, or ctx ended.
func (n *Node) Shutdown(ctx context.Context) error {
	n.adoptMu.Lock()
	n.leaving = true
	n.adoptMu.Unlock()
	err := n.opts.Leases.SetLeaving(ctx)
	if err != nil {
		n.log.Warn("could not mark this node leaving", "err", err)
	}
	n.stopSweep()
	n.adopts.Wait() // each is bounded by the request timeout
	if herr := n.drain(ctx); herr != nil {
		n.log.Warn("hand-over on shutdown incomplete", "err", herr)
		err = errors.Join(err, herr)
	}
	n.leave(true)
	return err
}

// drain hands over everything hosted here, in rounds: a round keeps the
// sessions whose target was not a member when their batch came (the
// membership view can lag under load), so the next round plans them again
// with the view then. What is still here after shutdownRounds is released
// without a target: its leases are free at once, not at their expiry, and
// the other nodes' sweeps adopt it.
func (n *Node) drain(ctx context.Context) error {
	for round := 1; ; round++ {
		if err := n.handOverAll(ctx); err != nil {
			return err
		}
		hosted, err := n.opts.Local.Hosted(ctx)
		if err != nil || len(hosted) == 0 {
			return err
		}
		if round == shutdownRounds {
			n.log.Warn("cluster: releasing sessions no other node confirmed", "sessions", len(hosted))
			return n.inBatches(ctx, hosted, 0, func(b []string) error { return n.opts.Local.Release(ctx, b) })
		}
		if err := sleep(ctx, shutdownRoundPause); err != nil {
			return err
		}
	}
}

// shutdownRounds bounds drain's hand-over rounds, shutdownRoundPause
// apart.
const (
	shutdownRounds     = 4
	shutdownRoundPause = 250 * time.Millisecond
)

// startAdopt counts an adoption another node asked for, unless this node
// is leaving; the caller calls adopts.Done when it ends.
func (n *Node) startAdopt() bool {
	n.adoptMu.Lock()
	defer n.adoptMu.Unlock()
	if n.leaving {
		return false
	}
	n.adopts.Add(1)
	return true
}

// Close leaves the cluster at once, without handing anything over (as a
// crash would, but deregistering from the membership).
func (n *Node) Close() {
	n.stopSweep()
	n.leave(false)
}

func (n *Node) stopSweep() {
	n.claimsMu.Lock() // no ask starts after this
	if n.stop != nil {
		n.stop()
	}
	n.claimsMu.Unlock()
	n.swept.Wait()
	n.claims.Wait()
}

func (n *Node) leave(graceful bool) {
	n.closeOnce.Do(func() {
		n.system.EventStream.Unsubscribe(n.topoSub)
		if !graceful {
			// protoactor's ungraceful shutdown leaves the provider
			// registered (and its goroutines running).
			_ = n.opts.Provider.Shutdown(false)
		}
		n.cluster.Shutdown(graceful)
		n.unregister()
		n.log.Info("left the cluster")
	})
}

func (n *Node) unregister() {
	if n.metrics != nil {
		n.metrics.unregister()
	}
}

// poke asks the sweep for a round now (a topology change).
func (n *Node) poke() {
	select {
	case n.nudge <- struct{}{}:
	default:
	}
}

// call sends req to target and waits for its reply, bounded by ctx and
// RequestTimeout. The reply comes back to this node's reply actor, which
// hands it to the waiting caller by request number: a reply that comes
// after its caller gave up finds no one and is dropped (no future to race).
func (n *Node) call(ctx context.Context, target *actor.PID, req request) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.RequestTimeout)
	defer cancel()
	req.Req = n.seq.Add(1)
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMs = max(time.Until(dl).Milliseconds(), 1)
	}
	ch := make(chan reply, 1)
	n.pending.Store(req.Req, ch)
	defer n.pending.Delete(req.Req)
	n.system.Root.RequestWithCustomSender(target, pack(req), n.replyPID)
	select {
	case r := <-ch:
		if r.Err != nil {
			return r, decodeError(r.Node, r.Err)
		}
		return r, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return reply{}, sessions.Errorf(sessions.ErrTimeout, "node at %s did not answer in time", target.Address)
		}
		return reply{}, ctx.Err()
	}
}

// deliver hands a reply to its waiting caller, if still waiting.
func (n *Node) deliver(r reply) {
	if ch, ok := n.pending.LoadAndDelete(r.Req); ok {
		ch.(chan reply) <- r // buffered, and only this one send
	}
}

func splitAddr(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}
