package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// stopGrains tells the node actor to stop the grains of sessions handed
// over, so that the next request activates them where they now belong.
type stopGrains struct{ ids []string }

// nodeActor is a member's own actor: it activates the session grains
// placed here (one child per session) and answers node requests (fleet,
// restore, adopt) in goroutines, never blocking its mailbox.
type nodeActor struct {
	n      *Node
	grains map[string]*actor.PID
}

// Receive is one type switch; the grains map is the actor's own state.
func (a *nodeActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *wrapperspb.BytesValue:
		var req request
		if err := json.Unmarshal(msg.Value, &req); err != nil {
			ctx.Logger().Warn("cluster: undecodable request", "err", err)
			return
		}
		if req.Op == opActivate {
			a.n.answer(ctx.Sender(), req, mustJSON(a.activate(ctx, req.ID)), nil)
			return
		}
		a.n.serveAsync(ctx.Sender(), req)
	case stopGrains:
		for _, id := range msg.ids {
			if pid, ok := a.grains[id]; ok {
				ctx.Stop(pid)
				delete(a.grains, id)
			}
		}
	case *actor.Terminated:
		for id, pid := range a.grains {
			if pid.Equal(msg.Who) {
				delete(a.grains, id)
				break
			}
		}
	}
}

// activate returns the grain of session id here, spawning it first.
func (a *nodeActor) activate(ctx actor.Context, id string) grainPID {
	pid, ok := a.grains[id]
	if !ok {
		kind := a.n.cluster.GetClusterKind(Kind)
		props := protocluster.WithClusterIdentity(kind.Props, protocluster.NewClusterIdentity(id, Kind))
		pid = ctx.Spawn(props)
		ctx.Watch(pid)
		a.grains[id] = pid
	}
	return grainPID{Address: pid.Address, ID: pid.Id}
}

// grain is the session's virtual actor on the node it is placed on: it
// forwards each request to that node's Local service and answers.
type grain struct{ n *Node }

// Receive starts each request in a goroutine (a Local call blocks).
func (g *grain) Receive(ctx actor.Context) {
	if msg, ok := ctx.Message().(*wrapperspb.BytesValue); ok {
		var req request
		if err := json.Unmarshal(msg.Value, &req); err != nil {
			ctx.Logger().Warn("cluster: undecodable request", "err", err)
			return
		}
		g.n.serveAsync(ctx.Sender(), req)
	}
}

// replyActor takes the replies to this node's requests.
type replyActor struct{ n *Node }

// Receive hands each reply to its caller.
func (r *replyActor) Receive(ctx actor.Context) {
	if msg, ok := ctx.Message().(*wrapperspb.BytesValue); ok {
		var rep reply
		if err := json.Unmarshal(msg.Value, &rep); err != nil {
			ctx.Logger().Warn("cluster: undecodable reply", "err", err)
			return
		}
		r.n.deliver(rep)
	}
}

// serveAsync runs req against Local in a goroutine bounded by the
// caller's remaining time, and answers to. A panic is answered as an
// error rather than killing the process.
func (n *Node) serveAsync(to *actor.PID, req request) {
	go func() {
		var (
			res json.RawMessage
			err error
		)
		defer func() {
			if r := recover(); r != nil {
				n.log.Error("cluster: request panicked", "op", req.Op, "panic", r)
				err = fmt.Errorf("request %s panicked", req.Op)
				res = nil
			}
			n.answer(to, req, res, err)
		}()
		timeout := time.Duration(req.TimeoutMs) * time.Millisecond
		if timeout <= 0 {
			timeout = n.opts.RequestTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res, err = n.serve(ctx, req)
	}()
}

// answer sends req's reply to the caller's reply actor.
func (n *Node) answer(to *actor.PID, req request, res json.RawMessage, err error) {
	if to == nil {
		return
	}
	we := encodeError(err)
	if we != nil && we.Code == "internal" {
		n.log.Error("cluster: request failed", "op", req.Op, "err", err)
	}
	n.system.Root.Send(to, pack(reply{Req: req.Req, Node: n.opts.Name, Result: res, Err: we}))
}

// serve is one request against this node's Local service.
func (n *Node) serve(ctx context.Context, req request) (json.RawMessage, error) {
	l := n.opts.Local
	switch req.Op {
	case opStatus:
		return result(l.Status(ctx, req.ID))
	case opCreate:
		return result(l.Create(ctx, req.ID))
	case opStop:
		return result(l.Stop(ctx, req.ID))
	case opDelete:
		return nil, l.Delete(ctx, req.ID)
	case opLogout:
		return result(l.Logout(ctx, req.ID))
	case opQR:
		return result(l.QR(ctx, req.ID))
	case opPairPhone:
		var phone string
		if err := json.Unmarshal(req.Args, &phone); err != nil {
			return nil, err
		}
		return result(l.PairPhone(ctx, req.ID, phone))
	case opSend:
		var a sendArgs
		if err := json.Unmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		a.Req.IdempotencyKey = a.Key
		return result(l.Send(ctx, req.ID, a.Req))
	case opMarkRead:
		var a readArgs
		if err := json.Unmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		a.Req.ID = a.ID
		return nil, l.MarkRead(ctx, req.ID, a.Req)
	case opAct:
		d, ok := l.(sessions.TestDriver)
		if !ok {
			return nil, sessions.Errorf(sessions.ErrNotFound, "test actions are served in test mode only")
		}
		var a actArgs
		if err := json.Unmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		return result(d.Act(ctx, req.ID, a.Action, a.Params))
	case opFleet:
		return result(l.Fleet(ctx))
	case opRestore:
		return nil, l.Restore(ctx, req.IDs)
	case opAdopt:
		if !n.startAdopt() {
			// The asker released them: a sweep elsewhere adopts them.
			return nil, sessions.Errorf(sessions.ErrShuttingDown, "this node is leaving the cluster")
		}
		defer n.adopts.Done()
		return nil, l.Adopt(ctx, req.IDs)
	case opPing:
		return nil, l.Ping(ctx)
	case opClaim:
		return result(n.claim(ctx, req.ID, req.Args))
	}
	return nil, fmt.Errorf("unknown operation %q", req.Op)
}

func result[T any](v T, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	return b, err
}

// lookup is the IdentityLookup protoactor's cluster.Get uses: our
// placement, then an activation on the chosen node.
type lookup struct{ n *Node }

var _ protocluster.IdentityLookup = (*lookup)(nil)

// Get is the grain of ci on its node, or nil when no node can take it
// now (protoactor retries).
func (l *lookup) Get(ci *protocluster.ClusterIdentity) *actor.PID {
	ctx, cancel := context.WithTimeout(context.Background(), l.n.opts.RequestTimeout)
	defer cancel()
	pid, err := l.n.activate(ctx, ci.Identity)
	if err != nil {
		l.n.log.Debug("cluster: no grain", "err", err)
		return nil
	}
	return pid
}

// RemovePid: a grain that stops is forgotten by its node actor (it
// watches its grains); protoactor's pid caches drop a left member's pids.
func (l *lookup) RemovePid(*protocluster.ClusterIdentity, *actor.PID) {}

// Setup spawns this member's node and reply actors, once the remote has
// its address (protoactor calls it from StartMember).
func (l *lookup) Setup(c *protocluster.Cluster, _ []string, _ bool) {
	n := l.n
	var err error
	n.nodePID, err = c.ActorSystem.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &nodeActor{n: n, grains: map[string]*actor.PID{}}
	}), nodeActorName)
	if err != nil {
		panic(fmt.Errorf("spawn the node actor: %w", err))
	}
	n.replyPID, err = c.ActorSystem.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &replyActor{n: n}
	}), replyActorName)
	if err != nil {
		panic(fmt.Errorf("spawn the reply actor: %w", err))
	}
}

// Shutdown: the node's actors stop with the actor system.
func (l *lookup) Shutdown() {}

// nodePIDAt is the node actor of the member at address.
func nodePIDAt(address string) *actor.PID { return actor.NewPID(address, nodeActorName) }
