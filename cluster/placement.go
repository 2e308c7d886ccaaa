package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// ErrNoNode: no live eligible node can take a session now.
var ErrNoNode = errors.New("no live eligible node in the cluster")

// placer places sessions over one snapshot of the live eligible nodes:
// the nodes of the lease table that are eligible and members of the
// cluster now.
type placer struct {
	live   map[string]Peer // by name
	byAddr map[string]Peer
	rdv    *protocluster.Rendezvous
}

// placer snapshots the live eligible nodes.
func (n *Node) placer(ctx context.Context) (*placer, error) {
	eligible, err := n.opts.Leases.Eligible(ctx)
	if err != nil {
		return nil, fmt.Errorf("eligible nodes: %w", err)
	}
	members := map[string]bool{}
	for _, addr := range n.Members() {
		members[addr] = true
	}
	var live []Peer
	for _, e := range eligible {
		if members[e.Address] {
			live = append(live, e)
		}
	}
	return newPlacer(live), nil
}

// newPlacer is a placer over exactly peers.
func newPlacer(peers []Peer) *placer {
	p := &placer{live: map[string]Peer{}, byAddr: map[string]Peer{}, rdv: protocluster.NewRendezvous()}
	var ms protocluster.Members
	for _, e := range peers {
		host, port, err := splitAddr(e.Address)
		if err != nil {
			continue
		}
		p.live[e.Name] = e
		p.byAddr[e.Address] = e
		ms = append(ms, &protocluster.Member{Host: host, Port: int32(port), Id: e.Name, Kinds: []string{Kind}})
	}
	p.rdv.UpdateMembers(ms)
	return p
}

// rendezvous is id's rendezvous choice among the live eligible nodes.
func (p *placer) rendezvous(id string) (Peer, bool) {
	addr := p.rdv.GetByClusterIdentity(protocluster.NewClusterIdentity(id, Kind))
	peer, ok := p.byAddr[addr]
	return peer, ok
}

// place is id's node: its lease holder when that node is live and
// eligible, else the rendezvous choice.
func (p *placer) place(id, holder string) (Peer, bool) {
	if peer, ok := p.live[holder]; ok {
		return peer, true
	}
	return p.rendezvous(id)
}

// placeOne is session id's node now.
func (n *Node) placeOne(ctx context.Context, id string) (Peer, error) {
	p, err := n.placer(ctx)
	if err != nil {
		return Peer{}, err
	}
	holders, err := n.opts.Leases.Holders(ctx, []string{id})
	if err != nil {
		return Peer{}, fmt.Errorf("lease holder: %w", err)
	}
	peer, ok := p.place(id, holders[id])
	if !ok {
		return Peer{}, ErrNoNode
	}
	return peer, nil
}

// activate is session id's grain, activated on its node.
func (n *Node) activate(ctx context.Context, id string) (*actor.PID, error) {
	peer, err := n.placeOne(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := n.call(ctx, nodePIDAt(peer.Address), request{Op: opActivate, ID: id})
	if err != nil {
		return nil, err
	}
	var g grainPID
	if err := jsonUnmarshal(r.Result, &g); err != nil {
		return nil, err
	}
	return actor.NewPID(g.Address, g.ID), nil
}

// placeAll groups ids by their node's address; ids no node can take are
// under "".
func (n *Node) placeAll(ctx context.Context, ids []string) (map[string][]string, error) {
	p, err := n.placer(ctx)
	if err != nil {
		return nil, err
	}
	holders, err := n.opts.Leases.Holders(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("lease holders: %w", err)
	}
	out := map[string][]string{}
	for _, id := range ids {
		peer, _ := p.place(id, holders[id])
		out[peer.Address] = append(out[peer.Address], id)
	}
	return out, nil
}
