package console_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Nothing the console's tests start is left running: the service, the
// browser's connection and the reader of the page's console all end with
// their test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// protoactor throttles dead-letter logging with a goroutine that
		// lives one throttle interval after a message reached a stopped
		// actor, then ends by itself.
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}
