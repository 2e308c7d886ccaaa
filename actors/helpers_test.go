package actors_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// testBackoff keeps retries fast enough for tests.
var testBackoff = actors.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Reset: time.Minute}

// harness is a real manager (real actor system, real sessions directory)
// over a fake opener.
type harness struct {
	t      *testing.T
	dir    *store.Dir
	opener *fakeOpener
	mgr    *actors.Manager
}

func newHarness(t *testing.T, tweak ...func(*actors.Options)) *harness {
	t.Helper()
	dir, err := store.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	opener := newFakeOpener(dir)
	opts := actors.Options{
		Registry: dir, Opener: opener, Backoff: testBackoff,
		RestoreConcurrency: 8, ConnectRate: 1000, ConnectBurst: 100,
		RestartBudget: 5, RestartWindow: time.Minute, RequestTimeout: 5 * time.Second,
	}
	for _, f := range tweak {
		f(&opts)
	}
	// Every move the sessions made, the shutdown's included, is one the
	// state table allows (registered first, so it runs after the shutdown).
	var mgr *actors.Manager
	t.Cleanup(func() {
		if mgr == nil {
			return
		}
		if n := mgr.RefusedMoves(); n != 0 {
			t.Errorf("%d state moves refused (see the log)", n)
		}
	})
	mgr = e2e.Manager(t, opts)
	return &harness{t: t, dir: dir, opener: opener, mgr: mgr}
}

// stored makes a session directory on disk, paired or not.
func (h *harness) stored(id string, paired bool) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Join(h.dir.Root(), "session-"+id), 0o700); err != nil {
		h.t.Fatal(err)
	}
	h.opener.setPaired(id, paired)
}

// restore restores every stored session; an error fails the test.
func (h *harness) restore() {
	h.t.Helper()
	if err := h.mgr.Restore(context.Background(), nil); err != nil {
		h.t.Fatal(err)
	}
}

// connected stores session id paired, restores it and waits until it is
// connected.
func (h *harness) connected(id string) {
	h.t.Helper()
	h.stored(id, true)
	h.restore()
	h.waitState(id, sessions.StateConnected)
}

func (h *harness) status(id string) sessions.Status {
	h.t.Helper()
	return e2e.Status(h.t, h.mgr, id)
}

// waitState polls until session id is in state, or fails after 10 s.
func (h *harness) waitState(id string, state sessions.State) sessions.Status {
	h.t.Helper()
	var last sessions.Status
	eventually(h.t, func() bool {
		st, err := h.mgr.Status(context.Background(), id)
		last = st
		return err == nil && st.State == state
	}, "session %s to be %s (last: %+v)", id, state, &last)
	return last
}

// eventually polls cond every 5 ms for up to 10 s.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	// The description is formatted at each poll: its arguments may point
	// at what the condition last saw.
	e2e.WaitFor(t, 10*time.Second, "the condition", func() (bool, string) {
		return cond(), fmt.Sprintf(format, args...)
	})
}
