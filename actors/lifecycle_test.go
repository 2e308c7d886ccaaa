package actors_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

func TestLifecycleCreateStopStartDelete(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	res, err := h.mgr.Create(ctx, "new")
	if err != nil || !res.Created {
		t.Fatalf("create: %+v, %v", res, err)
	}
	st := h.waitState("new", sessions.StatePairing)
	if st.UserAction != sessions.ActionScanQR {
		t.Errorf("pairing session asks for %s", st.UserAction)
	}
	qr, err := h.mgr.QR(ctx, "new")
	if err != nil || qr.Code != "2@fake-qr" || qr.ExpiresAt.IsZero() {
		t.Fatalf("qr: %+v, %v", qr, err)
	}
	code, err := h.mgr.PairPhone(ctx, "new", "15551234567")
	if err != nil || code != "ABCD-EFGH" {
		t.Fatalf("pair phone: %q, %v", code, err)
	}
	res, err = h.mgr.Create(ctx, "new")
	if err != nil || res.Created || res.Status.State != sessions.StatePairing {
		t.Fatalf("second create changed something: %+v, %v", res, err)
	}
	if _, err := h.mgr.Logout(ctx, "new"); !errors.Is(err, sessions.ErrWrongState) {
		t.Errorf("logout while pairing: %v, want wrong state", err)
	}

	st, err = h.mgr.Stop(ctx, "new")
	if err != nil || st.State != sessions.StateStopped {
		t.Fatalf("stop: %+v, %v", st, err)
	}
	if n := h.opener.live("new"); n != 0 {
		t.Errorf("%d clients open after stop", n)
	}
	stored, _ := h.dir.Discover()
	if len(stored) != 1 || !stored[0].Stopped {
		t.Errorf("stop not remembered on disk: %+v", stored)
	}
	for name, call := range map[string]func() error{
		"stop again": func() error { _, err := h.mgr.Stop(ctx, "new"); return err },
		"qr":         func() error { _, err := h.mgr.QR(ctx, "new"); return err },
		"pair-phone": func() error { _, err := h.mgr.PairPhone(ctx, "new", "15551234567"); return err },
		"logout":     func() error { _, err := h.mgr.Logout(ctx, "new"); return err },
	} {
		if err := call(); !errors.Is(err, sessions.ErrWrongState) {
			t.Errorf("%s on a stopped session: %v, want wrong state", name, err)
		}
	}

	if res, err := h.mgr.Create(ctx, "new"); err != nil || !res.Created {
		t.Fatalf("start after stop: %+v, %v", res, err)
	}
	h.waitState("new", sessions.StatePairing)
	if stored, _ := h.dir.Discover(); stored[0].Stopped {
		t.Error("start left the stop marker behind")
	}

	if err := h.mgr.Delete(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.mgr.Status(ctx, "new"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("status after delete: %v", err)
	}
	if ok, _ := h.dir.Exists("new"); ok {
		t.Error("directory still there after delete")
	}
	if n := h.opener.live("new"); n != 0 {
		t.Errorf("%d clients open after delete", n)
	}
	if err := h.mgr.Delete(ctx, "new"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestLogoutLeavesNeedsPairing(t *testing.T) {
	h := newHarness(t)
	h.connected("paired")
	st, err := h.mgr.Logout(context.Background(), "paired")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != sessions.StateNeedsPairing || st.JID != nil || st.UserAction != sessions.ActionScanQR {
		t.Errorf("after logout: %+v", st)
	}
	if n := h.opener.live("paired"); n != 0 {
		t.Errorf("%d clients open after logout", n)
	}
	if ok, _ := h.dir.Exists("paired"); !ok {
		t.Error("logout removed the session's directory")
	}
}

func TestConcurrentCreatesMakeOneSession(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.mgr.Create(context.Background(), "dup")
			if err != nil {
				t.Error(err)
				return
			}
			if res.Created {
				mu.Lock()
				created++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	h.waitState("dup", sessions.StatePairing)
	if created != 1 {
		t.Errorf("%d creates said they created the session, want 1", created)
	}
	if n := h.opener.live("dup"); n != 1 {
		t.Errorf("%d clients for one session", n)
	}
}

func TestRestoreNamingUnknownOrInvalidSessions(t *testing.T) {
	h := newHarness(t)
	h.stored("known", true)
	if err := h.mgr.Restore(context.Background(), []string{"known", "ghost"}); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if err := h.mgr.Restore(context.Background(), []string{"../etc"}); !errors.Is(err, store.ErrInvalidID) {
		t.Errorf("invalid id: %v", err)
	}
	if _, err := h.mgr.Status(context.Background(), "known"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a rejected restore started something: %v", err)
	}
}

// TestStopAndDeleteWaitForAStoreBeingOpened: a session whose store is
// still opening (a slow disk, deaf to its context) is stopped or deleted.
// The answer waits until the goroutine opening it has closed what it
// opened, so no client outlives the stop and the delete removes a directory
// nothing re-creates; meanwhile the manager keeps answering.
func TestStopAndDeleteWaitForAStoreBeingOpened(t *testing.T) {
	for _, op := range []string{"stop", "delete"} {
		t.Run(op, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			gate := make(chan struct{})
			h.opener.mu.Lock()
			h.opener.openGate = gate
			h.opener.mu.Unlock()
			if _, err := h.mgr.Create(ctx, "slow"); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return h.opener.opens.Load() == 1 }, "the store to be opening")

			done := make(chan error, 1)
			go func() {
				var err error
				if op == "stop" {
					_, err = h.mgr.Stop(ctx, "slow")
				} else {
					err = h.mgr.Delete(ctx, "slow")
				}
				done <- err
			}()
			for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
				if _, err := h.mgr.Fleet(ctx); err != nil {
					t.Fatalf("fleet while the store opens: %v", err)
				}
				select {
				case err := <-done:
					t.Fatalf("%s answered (%v) while the store was still opening", op, err)
				default:
				}
			}
			close(gate)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s still waiting after the store opened", op)
			}
			if n := h.opener.live("slow"); n != 0 {
				t.Errorf("%d clients open after %s", n, op)
			}
			exists, _ := h.dir.Exists("slow")
			if want := op == "stop"; exists != want {
				t.Errorf("directory exists: %v after %s, want %v", exists, op, want)
			}
		})
	}
}

// listingBeforeDelete is a directory whose listing still shows a stopped
// session that a delete has removed meanwhile, as a listing read just
// before the delete finished does.
type listingBeforeDelete struct {
	*store.Dir
	gone string
}

func (l listingBeforeDelete) Discover() ([]store.Stored, error) {
	stored, err := l.Dir.Discover()
	return append(stored, store.Stored{ID: l.gone, Stopped: true}), err
}

// A restore whose listing still shows a stopped session deleted since
// does not bring it back as stopped (the storm in races_test.go found a
// create of such a phantom answered 404), and a create of a stopped
// session whose directory is gone pairs it anew.
func TestDeletedStoppedSessionStaysGone(t *testing.T) {
	h := newHarness(t, func(o *actors.Options) {
		o.Registry = listingBeforeDelete{Dir: o.Registry.(*store.Dir), gone: "gone"}
	})
	ctx := context.Background()
	if err := h.dir.SetStopped("kept", true); err != nil { // stopped on disk, listed too
		t.Fatal(err)
	}
	if err := h.mgr.Restore(ctx, nil); err != nil {
		t.Fatal(err)
	}
	h.waitState("kept", sessions.StateStopped) // the listing has been worked through
	if st, err := h.mgr.Status(ctx, "gone"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a deleted session listed by a restore: %+v, %v; want not found", st, err)
	}
	if res, err := h.mgr.Create(ctx, "gone"); err != nil || !res.Created {
		t.Errorf("create: %+v, %v", res, err)
	}
	h.waitState("gone", sessions.StatePairing)

	// The operator removed a stopped session's directory by hand.
	kept, err := h.dir.SessionPath("kept")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(kept); err != nil {
		t.Fatal(err)
	}
	if res, err := h.mgr.Create(ctx, "kept"); err != nil || !res.Created {
		t.Errorf("create of a stopped session whose directory is gone: %+v, %v", res, err)
	}
	h.waitState("kept", sessions.StatePairing)
}
