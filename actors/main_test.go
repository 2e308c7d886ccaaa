package actors_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a session starts (dials, timers, pairing) must end when
// the manager shuts down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// protoactor throttles dead-letter logging with a goroutine that
		// lives one throttle interval after a message reached a stopped
		// actor (a late dial result, say), then ends by itself.
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}
