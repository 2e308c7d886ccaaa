package webhooks_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine an outbox starts (committer, dispatchers, workers,
// pruning, idle HTTP connections) ends with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
