package actors

import (
	"context"

	"golang.org/x/time/rate"
)

// Pacer spaces out connection attempts across every session: at most rate
// starts a second (burst at once), and at most concurrency in flight, so a
// thousand numbers never dial in one burst, at start-up or after a mass
// disconnect.
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

// Acquire waits for a turn and returns the function that ends it.
func (p *Pacer) Acquire(ctx context.Context) (release func(), err error) {
	if err := p.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
