package actors_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

func TestRestoreBringsBackEverySessionAndIsolatesBrokenOnes(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{"alice", "bob", "carol"} {
		h.stored(id, true)
	}
	h.stored("unpaired", false)
	h.stored("corrupt", true)
	h.opener.openErr["corrupt"] = fmt.Errorf("%w: quick_check: page 3 is never used", store.ErrCorrupt)
	h.stored("parked", true)
	if err := h.dir.SetStopped("parked", true); err != nil {
		t.Fatal(err)
	}

	h.restore()
	for _, id := range []string{"alice", "bob", "carol"} {
		st := h.waitState(id, sessions.StateConnected)
		if !st.Connected || !st.LoggedIn || st.JID == nil || st.Error != nil || st.UserAction != sessions.ActionNone {
			t.Errorf("%s: %+v", id, st)
		}
	}
	st := h.waitState("unpaired", sessions.StateNeedsPairing)
	if st.UserAction != sessions.ActionScanQR || st.Error == nil || st.Error.Code != sessions.CodeNotPaired {
		t.Errorf("unpaired: %+v", st)
	}
	st = h.waitState("corrupt", sessions.StateFailed)
	if st.Error == nil || st.Error.Code != sessions.CodeStoreCorrupt || st.UserAction != sessions.ActionRestore {
		t.Errorf("corrupt: %+v", st)
	}
	h.waitState("parked", sessions.StateStopped)
	if n := h.opener.live("parked"); n != 0 {
		t.Errorf("a stopped session was opened: %d clients", n)
	}
	// Nothing lost: the broken session's directory is still there.
	if ok, _ := h.dir.Exists("corrupt"); !ok {
		t.Error("corrupt session's directory was removed")
	}
	f, err := h.mgr.Fleet(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[sessions.State]int{sessions.StateConnected: 3, sessions.StateNeedsPairing: 1, sessions.StateFailed: 1, sessions.StateStopped: 1}
	for s, n := range want {
		if f.Counts[s] != n {
			t.Errorf("count %s = %d, want %d (%v)", s, f.Counts[s], n, f.Counts)
		}
	}
	for i := 1; i < len(f.Sessions); i++ {
		if f.Sessions[i-1].SenderID >= f.Sessions[i].SenderID {
			t.Errorf("fleet not sorted: %s before %s", f.Sessions[i-1].SenderID, f.Sessions[i].SenderID)
		}
	}
	r := f.Restore
	if r.Found != 5 || r.Restored != 3 || r.NeedsPairing != 1 || r.Failed != 1 || r.Pending != 0 || r.Finished == nil {
		t.Errorf("restore progress = %+v", r)
	}
}

func TestPanicRestartsOnlyThatSession(t *testing.T) {
	h := newHarness(t)
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		h.stored(id, true)
	}
	h.restore()
	before := map[string]sessions.Status{}
	for _, id := range ids {
		before[id] = h.waitState(id, sessions.StateConnected)
	}
	opensBefore := h.opener.opens.Load()

	if err := h.mgr.Panic(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		st := h.status("a")
		return st.Restarts == 1 && st.State == sessions.StateConnected
	}, "a to restart and reconnect")
	if n := h.opener.live("a"); n != 1 {
		t.Errorf("a has %d live clients after its restart, want 1", n)
	}
	if got := h.opener.opens.Load() - opensBefore; got != 1 {
		t.Errorf("%d stores opened after one panic, want 1", got)
	}
	for _, id := range []string{"b", "c"} {
		if got := h.status(id); got.State != before[id].State || !got.Since.Equal(before[id].Since) || got.Restarts != 0 {
			t.Errorf("sibling %s changed: before %+v, after %+v", id, before[id], got)
		}
		if n := h.opener.live(id); n != 1 {
			t.Errorf("sibling %s has %d live clients", id, n)
		}
	}
}

func TestSpentRestartBudgetIsVisibleAndRestoreRecovers(t *testing.T) {
	h := newHarness(t, func(o *actors.Options) { o.RestartBudget = 1 })
	h.stored("flaky", true)
	h.stored("steady", true)
	h.restore()
	h.waitState("flaky", sessions.StateConnected)
	steady := h.waitState("steady", sessions.StateConnected)

	if err := h.mgr.Panic(context.Background(), "flaky"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { st := h.status("flaky"); return st.Restarts == 1 && st.State == sessions.StateConnected }, "first restart")
	if err := h.mgr.Panic(context.Background(), "flaky"); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("flaky", sessions.StateFailed)
	if st.Error == nil || st.Error.Code != sessions.CodeRestartBudget || st.UserAction != sessions.ActionRestore {
		t.Errorf("flaky: %+v", st)
	}
	eventually(t, func() bool { return h.opener.live("flaky") == 0 }, "flaky's client to be closed")
	if got := h.status("steady"); !got.Since.Equal(steady.Since) || got.State != sessions.StateConnected {
		t.Errorf("steady changed: %+v", got)
	}

	if err := h.mgr.Restore(context.Background(), []string{"flaky"}); err != nil {
		t.Fatal(err)
	}
	h.waitState("flaky", sessions.StateConnected)
	if n := h.opener.live("flaky"); n != 1 {
		t.Errorf("flaky has %d live clients after restore", n)
	}
}

func TestConcurrentRestoresLeaveOneActorAndOneClientPerSession(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("s%02d", i)
		ids = append(ids, id)
		h.stored(id, true)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.mgr.Restore(context.Background(), nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		h.waitState(id, sessions.StateConnected)
	}
	// More restores after everything is connected change nothing either.
	for range 10 {
		h.restore()
	}
	if err := h.mgr.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if n := h.opener.live(id); n != 1 {
			t.Errorf("%s: %d live clients, want 1", id, n)
		}
		if n := h.opener.connected(id); n != 1 {
			t.Errorf("%s: %d connected clients, want 1", id, n)
		}
	}
	if got := h.opener.opens.Load(); got != int64(len(ids)) {
		t.Errorf("%d stores opened for %d sessions", got, len(ids))
	}
}

func TestStatusAnswersAtOnceWhileASessionIsRestarting(t *testing.T) {
	h := newHarness(t)
	h.connected("slow")
	// Closing the client (which a restart does) now hangs until released.
	gate := make(chan struct{})
	h.opener.last("slow").closeGate = gate
	defer close(gate)

	if err := h.mgr.Panic(context.Background(), "slow"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.status("slow").Restarts == 1 }, "the restart to be reported")
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := h.mgr.Status(ctx, "slow")
		cancel()
		if err != nil {
			t.Fatalf("status while restarting: %v", err)
		}
	}
	if _, err := h.mgr.Fleet(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableWhatsAppRetriesOnSchedule(t *testing.T) {
	h := newHarness(t)
	h.stored("offline", true)
	h.opener.setDialErr(errors.New("dial tcp: connect: network is unreachable"))
	h.restore()
	st := h.waitState("offline", sessions.StateReconnecting)
	if st.Error == nil || st.Error.Code != sessions.CodeDialFailed || st.NextRetryAt == nil || st.UserAction != sessions.ActionWait {
		t.Fatalf("offline: %+v", st)
	}
	eventually(t, func() bool { return h.status("offline").Reconnects >= 3 }, "three retries")
	// The stored account is shown although it never logged in.
	if st := h.status("offline"); st.JID == nil || *st.JID != fakeJID {
		t.Errorf("a paired session retrying shows jid %v, want %s", st.JID, fakeJID)
	}
	f, _ := h.mgr.Fleet(context.Background())
	if f.Restore.Pending != 1 || f.Restore.Finished != nil {
		t.Errorf("a retrying session should keep the restore pending: %+v", f.Restore)
	}
	h.opener.setDialErr(nil)
	h.waitState("offline", sessions.StateConnected)
	if n := h.opener.live("offline"); n != 1 {
		t.Errorf("%d live clients after recovering", n)
	}
}

// A session that was connected keeps showing its account while it
// reconnects, and after its actor restarted.
func TestReconnectingSessionKeepsItsJID(t *testing.T) {
	h := newHarness(t)
	h.connected("kept")
	h.opener.setDialErr(errors.New("dial tcp: connect: connection refused"))
	h.opener.last("kept").emit(whatsapp.Disconnected{})
	st := h.waitState("kept", sessions.StateReconnecting)
	eventually(t, func() bool { return h.status("kept").Reconnects >= 2 }, "two retries")
	for _, st := range []sessions.Status{st, h.status("kept")} {
		if st.JID == nil || *st.JID != fakeJID {
			t.Errorf("reconnecting: jid %v, want %s", st.JID, fakeJID)
		}
	}
	if err := h.mgr.Panic(context.Background(), "kept"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return h.status("kept").Restarts == 1 }, "a restart")
	if st := h.status("kept"); st.JID == nil || *st.JID != fakeJID {
		t.Errorf("after a restart: jid %v, want %s", st.JID, fakeJID)
	}
	h.opener.setDialErr(nil)
	h.waitState("kept", sessions.StateConnected)
}

// A new session whose first dial fails has not heard from WhatsApp: it
// retries with the backoff and shows the dial error, rather than asking
// for a QR scan it cannot offer.
func TestNewSessionRetriesWhileWhatsAppIsUnreachable(t *testing.T) {
	h := newHarness(t)
	const dialErr = "dial tcp 127.0.0.1:9: connect: connection refused"
	h.opener.setDialErr(errors.New(dialErr))
	if _, err := h.mgr.Create(context.Background(), "fresh"); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("fresh", sessions.StateReconnecting)
	if st.Error == nil || st.Error.Code != sessions.CodeDialFailed || !strings.Contains(st.Error.Message, dialErr) ||
		st.UserAction != sessions.ActionWait || st.NextRetryAt == nil {
		t.Fatalf("fresh, WhatsApp unreachable: %+v", st)
	}
	eventually(t, func() bool { return h.status("fresh").Reconnects >= 3 }, "three retries")
	if st := h.status("fresh"); st.State == sessions.StateNeedsPairing || st.JID != nil {
		t.Errorf("fresh while retrying: %+v", st)
	}
	if n := h.opener.live("fresh"); n > 1 {
		t.Errorf("%d clients open at once", n)
	}
	h.opener.setDialErr(nil)
	st = h.waitState("fresh", sessions.StatePairing)
	if st.UserAction != sessions.ActionScanQR || st.Error != nil {
		t.Errorf("fresh once WhatsApp answers: %+v", st)
	}
	if qr, err := h.mgr.QR(context.Background(), "fresh"); err != nil || qr.Code == "" {
		t.Errorf("qr: %+v, %v", qr, err)
	}
}

func TestBackoffDelaysStayWithinBounds(t *testing.T) {
	b := actors.Backoff{Min: time.Second, Max: 5 * time.Minute}
	for _, tc := range []struct {
		attempt int
		base    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {9, 256 * time.Second}, {10, 5 * time.Minute}, {60, 5 * time.Minute}} {
		t.Run(fmt.Sprint(tc.attempt), func(t *testing.T) {
			lo, hi := time.Duration(float64(tc.base)*0.8), time.Duration(float64(tc.base)*1.2)
			for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
				if d := b.Delay(tc.attempt, func() float64 { return r }); d < lo || d > hi {
					t.Errorf("Delay(%d) with rnd %v = %v, want within [%v, %v]", tc.attempt, r, d, lo, hi)
				}
			}
			for range 1000 {
				if d := b.Delay(tc.attempt, nil); d < lo || d > hi {
					t.Fatalf("Delay(%d) = %v, want within [%v, %v]", tc.attempt, d, lo, hi)
				}
			}
		})
	}
	if b.Delay(1, func() float64 { return 0 }) == b.Delay(1, func() float64 { return 0.99 }) {
		t.Error("jitter has no effect")
	}
}

func TestShutdownClosesEveryClient(t *testing.T) {
	h := newHarness(t)
	for i := range 10 {
		h.stored(fmt.Sprint("s", i), true)
	}
	h.restore()
	for i := range 10 {
		h.waitState(fmt.Sprint("s", i), sessions.StateConnected)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.mgr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if n := h.opener.live(fmt.Sprint("s", i)); n != 0 {
			t.Errorf("s%d still has %d open clients", i, n)
		}
	}
	if _, err := h.mgr.Status(context.Background(), "s1"); !errors.Is(err, sessions.ErrShuttingDown) {
		t.Errorf("status after shutdown: %v", err)
	}
}
