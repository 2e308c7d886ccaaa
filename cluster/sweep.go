package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// sweepLoop sweeps every SweepEvery and on each topology change, one
// sweep at a time, until ctx ends.
func (n *Node) sweepLoop(ctx context.Context) {
	defer n.swept.Done()
	t := time.NewTicker(n.opts.SweepEvery)
	defer t.Stop()
	// The first sweep waits a period: nodes started together then split
	// the sessions between them, instead of the first one up adopting
	// every session and handing two thirds over in paced batches.
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.nudge:
		}
		if err := n.Sweep(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("cluster: sweep failed", "err", err)
		}
	}
}

// Sweep is one round of balancing, as the loop runs it every SweepEvery
// and on each topology change: it adopts the active sessions placed on
// this node that no live eligible node holds (all at once: the manager
// paces their logins), then
// hands over, one paced batch at a time, the sessions this node hosts
// whose rendezvous choice is another live eligible node. A node that is
// not itself live and eligible (leaving, or cut off) adopts nothing.
func (n *Node) Sweep(ctx context.Context) error {
	p, err := n.placer(ctx)
	if err != nil {
		return err
	}
	if _, ok := p.live[n.opts.Name]; !ok {
		return nil
	}
	ids, err := n.opts.Registry.Active(ctx)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	hostedList, err := n.opts.Local.Hosted(ctx)
	if err != nil {
		return fmt.Errorf("hosted sessions: %w", err)
	}
	hosted := make(map[string]bool, len(hostedList))
	for _, id := range hostedList {
		hosted[id] = true
	}
	holders, err := n.opts.Leases.Holders(ctx, ids)
	if err != nil {
		return fmt.Errorf("lease holders: %w", err)
	}
	var adopt []string
	for _, id := range ids {
		if hosted[id] {
			continue
		}
		if _, held := p.live[holders[id]]; held {
			continue
		}
		if peer, ok := p.rendezvous(id); ok && peer.Name == n.opts.Name {
			adopt = append(adopt, id)
		}
	}
	// Orphans at once: no node serves them, so holding them back only
	// keeps them down longer (a dead node's thousands), and the manager's
	// restore pacer already paces their logins. Only hand-overs, which
	// take sessions that are up, go in paced batches.
	if len(adopt) > 0 {
		n.metrics.adopted(len(adopt))
		if err := n.opts.Local.Adopt(ctx, adopt); err != nil {
			return fmt.Errorf("adopt: %w", err)
		}
	}
	moves := map[string][]string{} // target address -> ids
	for _, id := range hostedList {
		if peer, ok := p.rendezvous(id); ok && peer.Name != n.opts.Name {
			moves[peer.Address] = append(moves[peer.Address], id)
		}
	}
	return n.handOver(ctx, moves, n.opts.BatchPause)
}

// handOverAll hands every session this node hosts to its rendezvous
// choice among the other live eligible nodes, in batches without pause
// (a shutdown).
func (n *Node) handOverAll(ctx context.Context) error {
	p, err := n.placer(ctx)
	if err != nil {
		return err
	}
	delete(p.live, n.opts.Name) // whatever Eligible still says
	others := make([]Peer, 0, len(p.live))
	for _, peer := range p.live {
		others = append(others, peer)
	}
	p = newPlacer(others)
	hosted, err := n.opts.Local.Hosted(ctx)
	if err != nil {
		return fmt.Errorf("hosted sessions: %w", err)
	}
	moves := map[string][]string{}
	var stranded []string
	for _, id := range hosted {
		if peer, ok := p.rendezvous(id); ok {
			moves[peer.Address] = append(moves[peer.Address], id)
		} else {
			stranded = append(stranded, id)
		}
	}
	err = n.handOver(ctx, moves, 0)
	if len(stranded) > 0 {
		// No other node: release anyway, so that the leases are free
		// for whichever node comes next instead of waiting to expire.
		err = errors.Join(err, n.inBatches(ctx, stranded, 0, func(b []string) error {
			return n.opts.Local.Release(ctx, b)
		}))
	}
	return err
}

// handOver moves sessions to their targets one batch at a time, pause
// apart: release the batch here (disconnect, close, release the lease),
// stop its grains here, then ask the target to adopt it, and wait for that
// answer before the next batch: never more than one batch in flight.
func (n *Node) handOver(ctx context.Context, moves map[string][]string, pause time.Duration) error {
	i := 0
	for addr, ids := range moves {
		for start := 0; start < len(ids); start += n.opts.BatchSize {
			if i > 0 {
				if err := sleep(ctx, pause); err != nil {
					return err
				}
			}
			i++
			if !slices.Contains(n.Members(), addr) {
				// The target left (or died) since the moves were
				// planned: keep the rest; the next sweep plans again.
				n.log.Warn("cluster: the hand-over's target is no longer a member", "target", addr, "kept", len(ids)-start)
				break
			}
			batch := ids[start:min(start+n.opts.BatchSize, len(ids))]
			if err := n.opts.Local.Release(ctx, batch); err != nil {
				return fmt.Errorf("release: %w", err)
			}
			n.system.Root.Send(n.nodePID, stopGrains{ids: batch})
			n.metrics.handedOver(len(batch))
			if _, err := n.call(ctx, nodePIDAt(addr), request{Op: opAdopt, IDs: batch}); err != nil {
				// Their leases are free: the target's own sweep adopts
				// them, or, if it is gone, the survivors' do. Release no
				// more to a target that does not answer.
				n.log.Warn("cluster: the hand-over's target did not confirm", "target", addr, "sessions", len(batch), "kept", len(ids)-start-len(batch), "err", err)
				break
			}
		}
	}
	return nil
}

// inBatches calls f on ids in batches of BatchSize, pause apart.
func (n *Node) inBatches(ctx context.Context, ids []string, pause time.Duration, f func([]string) error) error {
	for start := 0; start < len(ids); start += n.opts.BatchSize {
		if start > 0 {
			if err := sleep(ctx, pause); err != nil {
				return err
			}
		}
		if err := f(ids[start:min(start+n.opts.BatchSize, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d (nothing when d is not positive), or until ctx ends with
// its error.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
