package actors_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a session starts (dials, timers, pairing) must end when
// the manager shuts down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
