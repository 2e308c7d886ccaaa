package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Manager starts a session manager with opts alone (no HTTP; opts brings
// its own opener) and shuts it down in the test's cleanup, failing the test
// if the shutdown fails.
func Manager(t testing.TB, opts actors.Options) *actors.Manager {
	t.Helper()
	mgr, err := actors.NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := mgr.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return mgr
}

// Statuser is what tells a session's status: the manager, or the API's
// client.
type Statuser interface {
	Status(ctx context.Context, id string) (sessions.Status, error)
}

// Status is session id's status from s; an error fails the test.
func Status(t testing.TB, s Statuser, id string) sessions.Status {
	t.Helper()
	st, err := s.Status(context.Background(), id)
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	return st
}

// Prometheus is the path of name, a program of Debian's prometheus package
// (prometheus, promtool). Where it is missing the test is skipped, except in
// CI (CI=true), where .ci/run installs the package and its absence is a
// failure.
func Prometheus(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed: .ci/run installs Debian's prometheus package", name)
		}
		t.Skipf("%s is not installed (apt-get install prometheus)", name)
	}
	return bin
}
