package actors

import (
	"context"

	"golang.org/x/time/rate"
)

// Pacer spaces out connection attempts across every session: at most
// concurrency sessions opening a store or dialing at once, and at most rate
// dials a second (burst at once), so a thousand numbers never dial in one
// burst, at start-up or after a mass disconnect.
type Pacer struct {
	limiter *rate.Limiter
	slots   chan struct{}
}

// NewPacer returns a Pacer; see Config for the meaning of the numbers.
func NewPacer(perSecond float64, burst, concurrency int) *Pacer {
	return &Pacer{
		limiter: rate.NewLimiter(rate.Limit(perSecond), burst),
		slots:   make(chan struct{}, concurrency),
	}
}

// Slot waits for one of the concurrency slots and returns the function
// that frees it. Hold it across opening the store and dialing.
func (p *Pacer) Slot(ctx context.Context) (release func(), err error) {
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Dial waits for the rate to allow one more dial. Call it, holding a slot,
// right before dialing: taking the token earlier (before a slot, or before
// a slow store open) lets waiting callers save up tokens and then dial
// together, over the rate.
func (p *Pacer) Dial(ctx context.Context) error {
	return p.limiter.Wait(ctx)
}
