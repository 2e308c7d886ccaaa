package webhooks_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine an outbox starts (committer, dispatchers, workers,
// pruning, idle HTTP connections) ends with Close. With
// OUTBOX_CHILD_PATH set, the test binary is instead the publisher that
// TestKill9KeepsEveryCommittedEvent kills (or, with OUTBOX_CHILD_URL too,
// the deliverer that TestKillBeforeResultsCommit kills).
func TestMain(m *testing.M) {
	if path := os.Getenv("OUTBOX_CHILD_PATH"); path != "" {
		if url := os.Getenv("OUTBOX_CHILD_URL"); url != "" {
			deliverUntilKilled(path, url)
		}
		publishUntilKilled(path, os.Getenv("OUTBOX_CHILD_ROUND"))
		return
	}
	goleak.VerifyTestMain(m)
}
