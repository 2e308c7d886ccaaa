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
	// turn lets one caller at a time wait for the limiter (see Dial).
	turn chan struct{}
}

// NewPacer returns a Pacer; see Config for the meaning of the numbers.
func NewPacer(perSecond float64, burst, concurrency int) *Pacer {
	return &Pacer{
		limiter: rate.NewLimiter(rate.Limit(perSecond), burst),
		slots:   make(chan struct{}, concurrency),
		turn:    make(chan struct{}, 1),
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
//
// Callers wait for the limiter one at a time. Waiting together, each would
// reserve its moment in advance, and after the process stalls (a long GC,
// a starved CPU) every caller whose moment passed meanwhile would dial at
// once: rate × the stall over the burst (220 dials within 16 ms at 200/s
// after a 1 s stall). One at a time, the limiter is asked when a caller
// is really ready, and a stall saves up at most the burst.
func (p *Pacer) Dial(ctx context.Context) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	return p.limiter.Wait(ctx)
}
