package actors

import (
	"math/rand/v2"
	"time"
)

// Backoff is the retry policy for transient failures: the delay doubles from
// Min up to Max, each delay moved by up to ±20 % at random so that sessions
// dropped together do not come back together. whatsmeow's and protoactor's
// own retries are linear, so neither is used.
type Backoff struct {
	Min time.Duration
	Max time.Duration
	// Reset is how long a session must stay connected before its next
	// failure counts as the first again.
	Reset time.Duration
}

// jitter is the relative spread of every delay.
const jitter = 0.2

// Delay is the wait before retry number attempt (1 for the first). rnd
// returns a number in [0, 1); nil means math/rand.
func (b Backoff) Delay(attempt int, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	spread := (rnd()*2 - 1) * jitter // in [-0.2, 0.2)
	return time.Duration(float64(d) * (1 + spread))
}
