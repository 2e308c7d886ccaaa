package faults_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// The disk is a tmpfs this small: a fresh store's WAL grows to about 4 MiB
// (a thousand frames, SQLite's auto-checkpoint) before it is reused, and a
// pairing after the disk is freed must fit.
const tmpfsSize = "32m"

// mountTmpfs mounts a tmpfs of tmpfsSize and returns its path; it is
// unmounted when the test ends. The test is skipped where mounting is not
// permitted.
func mountTmpfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+tmpfsSize+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("a full disk needs a small tmpfs, and mount is not permitted here (%v: %s): run as root with CAP_SYS_ADMIN", err, strings.TrimSpace(string(out)))
	}
	// Registered after t.TempDir's removal, so it runs before it; and
	// before the service starts, so after the service is killed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a filler file into dir until the file system is full,
// checks nothing is left, and returns the file's path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A write that does not fit writes what fits, then fails: the disk is
	// full to its last block.
	buf := make([]byte, 64<<10)
	for err == nil {
		_, err = fh.Write(buf)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill the disk: %v", err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if free := freeBytes(t, dir); free != 0 {
		t.Fatalf("the disk still has %d bytes free after filling it", free)
	}
	return path
}

func freeBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}

func writeFailures(svc *e2e.Service, id string) float64 {
	return svc.Metric("whatsapp_session_store_write_failures_total", "session", id)
}

// TestDiskFull runs the service on a small tmpfs, with two connected
// sessions, and fills the disk. A session whose QR code is scanned while
// the disk is full cannot save its new device: its pairing fails visibly
// (needs_pairing, pairing_failed, the disk named in the message) and the
// refused write is logged and counted in
// whatsapp_session_store_write_failures_total; a session created while
// the disk is full cannot even create its store: failed,
// store_unavailable. The process does not crash and the connected
// sessions do not notice. Once the filler is deleted, both pair on the
// next try, and nothing else is lost; a restart brings all four back
// without pairing.
func TestDiskFull(t *testing.T) {
	disk := mountTmpfs(t)
	f := newFake(t)
	siblings := []string{"sib0", "sib1"}
	seedIDs(t, disk, siblings, seedOptions{userBase: "1555720"})
	b := takeBaseline(t, f, disk, siblings)

	svc := startService(t, f, disk)
	for _, id := range siblings {
		svc.WaitState(id, "connected", 20*time.Second)
	}
	// newbie shows its QR code while there is room: its store exists.
	svc.StartPairing("newbie")
	filler := fillDisk(t, disk)
	siblingsBefore := byID(svc.Fleet())
	delete(siblingsBefore, "newbie")

	// The phone scans newbie's code: whatsmeow cannot save the device.
	if code, out := svc.Call("POST", "/api/whatsapp/test/session/newbie/scan", ""); code == 200 {
		t.Errorf("scan on a full disk answered 200: %v", out)
	}
	st := svc.WaitState("newbie", "needs_pairing", 20*time.Second)
	if e2e.ErrCode(st) != "pairing_failed" || !strings.Contains(st.Error.Message, "full") || st.UserAction != "scan_qr" {
		t.Errorf("newbie after a pairing on a full disk: %v", st)
	}
	// late is created while the disk is full: no room for its store.
	if code, out := svc.Call("POST", "/api/whatsapp/session/late", ""); code != 202 {
		t.Fatalf("create late: %d %v", code, out)
	}
	st = svc.WaitState("late", "failed", 20*time.Second)
	if e2e.ErrCode(st) != "store_unavailable" || !strings.Contains(st.Error.Message, "full") {
		t.Errorf("late, created on a full disk: %v", st)
	}
	for _, id := range []string{"newbie", "late"} {
		if n := writeFailures(svc, id); n < 1 {
			t.Errorf("whatsapp_session_store_write_failures_total{session=%q} = %v, want at least 1", id, n)
		}
		if !hasLog(svc.Logs, "store write failed", id) {
			t.Errorf("no \"store write failed\" log line for %s", id)
		}
	}
	if code, _, _ := svc.Raw("GET", "/healthz", "", nil); code != 200 {
		t.Errorf("/healthz on a full disk: %d", code)
	}
	assertSiblingsUntouched(t, siblingsBefore, byID(svc.Fleet()))

	// Room again: both pair on the next try.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	newbie, late := svc.Pair("newbie"), svc.Pair("late")
	t.Logf("after the disk was freed: newbie %s, late %s", e2e.JID(newbie), e2e.JID(late))
	assertSiblingsUntouched(t, siblingsBefore, byID(svc.Fleet()))
	if svc.Exited() {
		t.Fatalf("the service exited:\n%s", svc.Logs.Tail(20))
	}
	b.assertNothingLost(t, svc, f, 2)

	// The two pairings made after the fault were saved: a restart brings
	// all four back without pairing.
	all := append([]string{"newbie", "late"}, siblings...)
	b2 := takeBaseline(t, f, disk, all)
	for id, jid := range map[string]string{"newbie": e2e.JID(newbie), "late": e2e.JID(late)} {
		if b2.keys[id].JID != jid {
			t.Errorf("%s: stored JID %s, status said %s", id, b2.keys[id].JID, jid)
		}
	}
	b2.assertNothingLost(t, startService(t, f, disk), f, 0)
}

// TestStoreWriteFailureAtLoginStaysVisible: a session whose store must
// write when it logs in (its uploaded prekeys ran out, so whatsmeow
// uploads a new batch) logs in while the disk is full. The write is
// refused, logged and counted, and the session is connected; its status
// must say store_write_failed until a write succeeds (actors/session.go:
// "say so until writes succeed again"). Once the disk has room and the
// session reconnects, the upload succeeds, the service logs that writes
// succeed again, and nothing is lost.
func TestStoreWriteFailureAtLoginStaysVisible(t *testing.T) {
	disk := mountTmpfs(t)
	f := newFake(t)
	ids := []string{"writer", "sib"}
	seedIDs(t, disk, ids, seedOptions{userBase: "1555730", lowPreKeys: func(i int) bool { return i == 0 }})
	const writerUser = "15557300000"
	b := takeBaseline(t, f, disk, ids)
	ctx := context.Background()

	// The writer cannot log in yet (503, retried): its store is open,
	// nothing written.
	if err := f.SetLoginFailure(ctx, writerUser, fakeserver.LoginFailure{Reason: 503}); err != nil {
		t.Fatal(err)
	}
	svc := startService(t, f, disk)
	svc.WaitState("sib", "connected", 20*time.Second)
	svc.WaitState("writer", "reconnecting", 20*time.Second)
	filler := fillDisk(t, disk)
	sibBefore := map[string]sessions.Status{"sib": svc.Status("sib")}

	if err := f.SetLoginFailure(ctx, writerUser, fakeserver.LoginFailure{}); err != nil {
		t.Fatal(err)
	}
	svc.WaitState("writer", "connected", 20*time.Second)
	e2e.WaitFor(t, 10*time.Second, "the writer's refused write to be counted", func() (bool, string) {
		n := writeFailures(svc, "writer")
		return n >= 1, fmt.Sprint(n)
	}, svc.Logs)
	if !hasLog(svc.Logs, "store write failed", "writer") {
		t.Error(`no "store write failed" log line for the writer`)
	}
	// A later small write can succeed even now: other databases in
	// SESSIONS_DIR (the webhook outbox) free space when their WAL is
	// checkpointed and truncated. Such a success clears the error, as it
	// should; without one the error must still show.
	if st := svc.Status("writer"); e2e.ErrCode(st) != "store_write_failed" && !hasLog(svc.Logs, "store writes succeed again", "writer") {
		t.Errorf("the writer is connected and its store refuses writes, but its status says %v: "+
			"a state change must not clear store_write_failed until a write succeeds", st)
	}
	assertSiblingsUntouched(t, sibBefore, byID(svc.Fleet()))

	// Room again; the next login uploads the prekeys.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Drop(ctx, writerUser); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, 20*time.Second, "the writer's writes to succeed again", func() (bool, string) {
		return hasLog(svc.Logs, "store writes succeed again", "writer"), ""
	}, svc.Logs)
	st := svc.WaitState("writer", "connected", 20*time.Second)
	if st.Error != nil {
		t.Errorf("writer after the disk was freed: %v", st)
	}
	assertSiblingsUntouched(t, sibBefore, byID(svc.Fleet()))
	b.assertNothingLost(t, svc, f, 0)
}

// hasLog reports whether the service logged msg for session id.
func hasLog(logs *e2e.Logs, msg, id string) bool {
	for _, rec := range logs.Records() {
		if rec["msg"] == msg && rec["session_id"] == id {
			return true
		}
	}
	return false
}

// TestLogoutOnAFullDiskLeavesNoConnectedGhost: an operator logs a
// connected session out while the disk is full. whatsmeow asks WhatsApp to
// unlink the device (it does), disconnects, then fails to delete the
// credentials from the full store, and Logout returns that error. The API
// answers an error, and the session must not go on saying "connected"
// with no connection behind it (nothing would retry it): it needs pairing,
// and its status says its credentials could not be deleted. Its sibling
// is not touched.
func TestLogoutOnAFullDiskLeavesNoConnectedGhost(t *testing.T) {
	disk := mountTmpfs(t)
	f := newFake(t)
	seedIDs(t, disk, []string{"bob", "sib"}, seedOptions{userBase: "1555750"})
	const bobUser = "15557500000"
	svc := startService(t, f, disk)
	svc.WaitState("bob", "connected", 20*time.Second)
	svc.WaitState("sib", "connected", 20*time.Second)
	fillDisk(t, disk)
	sibBefore := map[string]sessions.Status{"sib": svc.Status("sib")}

	code, out := svc.Call("POST", "/api/whatsapp/session/bob/logout", "")
	t.Logf("logout on a full disk: %d %v", code, out)
	if code == 200 {
		t.Errorf("logout on a full disk answered 200: the credentials could not be deleted")
	}
	e2e.WaitFor(t, 10*time.Second, "the fake server to see bob's socket closed", func() (bool, string) {
		n, _ := f.Connections(context.Background(), bobUser)
		return n == 0, fmt.Sprint(n, " live")
	})
	// Give the service the time a state change takes to show; a ghost
	// stays whatever the wait.
	var st sessions.Status
	deadline := time.Now().Add(3 * time.Second)
	for st = svc.Status("bob"); st.State == "connected" && time.Now().Before(deadline); st = svc.Status("bob") {
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := f.Connections(context.Background(), bobUser); st.State == "connected" && n == 0 {
		t.Errorf("after a logout that failed on the full disk, bob says %v with no live connection on the server", st)
	}
	if st.State != "needs_pairing" {
		t.Errorf("bob after the unlink: %v, want needs_pairing", st)
	}
	if e2e.ErrCode(st) != "store_write_failed" {
		t.Errorf("bob after the refused delete: %v, want error store_write_failed", st)
	}
	assertSiblingsUntouched(t, sibBefore, byID(svc.Fleet()))
}
