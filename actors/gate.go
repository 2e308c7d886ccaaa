package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Gate decides whether this node may connect a session: with several nodes
// on one store, a session's client connects only while its node holds the
// session's lease. *lease.Keeper implements it. Options.Gate nil means one
// node and no leases.
type Gate interface {
	// Acquire takes (or renews) session id's lease for this node; an
	// error wrapping sessions.ErrOwnedElsewhere means another node holds
	// it.
	Acquire(ctx context.Context, id string) error
	// Release gives up this node's leases of ids.
	Release(ctx context.Context, ids ...string) error
}

// leaseTimeout bounds one Acquire or Release.
const leaseTimeout = 10 * time.Second

// defaultLeaseRetry is how often a session waiting for a lease held
// elsewhere tries again, when Options.LeaseRetry is zero.
const defaultLeaseRetry = time.Second

// leaseHold is one session's hold on its lease, shared by its actor's
// incarnations and links. Its mutex puts every Acquire and Release of the
// session in one order, so that the late release of a closed link can never
// free the lease a newer link of the same session has just taken (the node
// is the owner either way, so the database could not tell them apart).
type leaseHold struct {
	gate Gate
	id   string

	mu sync.Mutex
	// holder is the link that took the lease last; nil once released.
	holder *link
}

// acquire takes the lease for l, unless l is closed already. The statement
// is not cut short when l closes meanwhile: its outcome is then known, and
// l's release (waiting for mu) frees what it took.
func (h *leaseHold) acquire(l *link) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := l.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	if err := h.gate.Acquire(ctx, h.id); err != nil {
		return err
	}
	h.holder = l
	return nil
}

// release frees the lease if l was the last link to take it. l's client
// is closed (disconnected) already.
func (h *leaseHold) release(l *link) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holder != l {
		return nil
	}
	h.holder = nil
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	if err := h.gate.Release(ctx, h.id); err != nil {
		return fmt.Errorf("release lease (it expires by itself): %w", err)
	}
	return nil
}

// scatter is d scattered over [d/2, 3d/2), so that sessions waiting for
// leases do not all ask at once.
func scatter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}
