package cluster

import (
	"context"
	"encoding/json"
	"slices"
)

// A session that finds its lease held by another live node tells that
// node (OwnedElsewhere), which settles the session at once instead of at
// its next sweep: when the asking node is the session's rendezvous choice,
// the holder hands it over now (as its sweep would); otherwise it answers
// where the session belongs, and the asking node releases its waiting
// copy rather than waiting for a lease that is not coming.

// opClaim is a node request: session ID's lease is held here and the node
// named in Args (the asker) wants it.
const opClaim = "claim"

// claimAnswer is the holder's answer: the session's rendezvous choice
// ("" when no node is live and eligible), and whether it was handed over
// to the asker.
type claimAnswer struct {
	Placement  string `json:"placement"`
	HandedOver bool   `json:"handedOver"`
}

// maxClaims bounds the asks in flight from this node: a batch of
// refusals beyond it is left to the sweep (the sessions tell again on
// their next refusal).
const maxClaims = 8

// OwnedElsewhere tells the node at holderAddress, which holds session
// id's lease while id waits here for it, and acts on its answer: the
// waiting session is released here unless it belongs here. It does not
// block; it returns false (nothing told) when the node is leaving or
// maxClaims asks are in flight.
func (n *Node) OwnedElsewhere(id, holderAddress string) bool {
	n.claimsMu.Lock()
	defer n.claimsMu.Unlock()
	if n.claimsCtx == nil || n.claimsCtx.Err() != nil || holderAddress == "" {
		return false
	}
	select {
	case n.claimSlots <- struct{}{}:
	default:
		return false
	}
	n.claims.Add(1)
	go func() {
		defer func() { <-n.claimSlots; n.claims.Done() }()
		n.askHolder(n.claimsCtx, id, holderAddress)
	}()
	return true
}

// askHolder asks the holder at address about session id and releases the
// waiting copy here when the session belongs to another node.
func (n *Node) askHolder(ctx context.Context, id, address string) {
	r, err := n.call(ctx, nodePIDAt(address), request{Op: opClaim, ID: id, Args: mustJSON(n.opts.Name)})
	if err != nil {
		n.log.Debug("cluster: the lease holder did not answer", "session_id", id, "holder", address, "err", err)
		return
	}
	var a claimAnswer
	if err := jsonUnmarshal(r.Result, &a); err != nil {
		n.log.Warn("cluster: an undecodable answer from the lease holder", "holder", address, "err", err)
		return
	}
	if a.Placement == "" || a.Placement == n.opts.Name {
		// Handed over (the session here takes the lease on its next
		// try), or about to be by the holder's sweep.
		return
	}
	if err := n.opts.Local.Release(ctx, []string{id}); err != nil {
		n.log.Warn("cluster: could not release a session placed elsewhere", "session_id", id, "err", err)
		return
	}
	n.system.Root.Send(n.nodePID, stopGrains{ids: []string{id}})
	n.log.Info("session is placed on another node: released the copy waiting here", "session_id", id, "placement", a.Placement)
}

// claim is the holder's side: session id's lease is held here and the
// node asker waits for it.
func (n *Node) claim(ctx context.Context, id string, rawAsker json.RawMessage) (claimAnswer, error) {
	var asker string
	if err := json.Unmarshal(rawAsker, &asker); err != nil {
		return claimAnswer{}, err
	}
	p, err := n.placer(ctx)
	if err != nil {
		return claimAnswer{}, err
	}
	peer, ok := p.rendezvous(id)
	if !ok || peer.Name != asker || asker == n.opts.Name {
		return claimAnswer{Placement: peer.Name}, nil
	}
	hosted, err := n.opts.Local.Hosted(ctx)
	if err != nil {
		return claimAnswer{}, err
	}
	if !slices.Contains(hosted, id) {
		return claimAnswer{Placement: peer.Name}, nil // its lease is on its way out
	}
	n.log.Info("handing a session over to the node that asked for it", "session_id", id, "target", asker)
	err = n.handOver(ctx, map[string][]string{peer.Address: {id}}, 0)
	return claimAnswer{Placement: peer.Name, HandedOver: err == nil}, err
}
