package faults_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
)

// TestKill9DuringRestore kills the service with SIGKILL at random moments
// while it restores many stored sessions (half of which write to their
// store at login: they upload a new batch of prekeys, so kills land in the
// middle of commits), again and again, then starts it cleanly: every
// store opens, nothing is lost, and no device is ever logged in twice at
// once (assertNoDoubleLogin), neither within a run (a session dialling
// twice) nor across runs. Between runs the test waits until the fake
// server has seen every socket of the killed process close, as WhatsApp
// sees the FIN the kernel sends for a killed process; the next process
// cannot start earlier anyway, since the dead one's flock goes with it.
func TestKill9DuringRestore(t *testing.T) {
	n, iterations := *killSessions, *kills
	seedVal := *killSeed
	if seedVal == 0 {
		seedVal = time.Now().UnixNano()
	}
	t.Logf("kill delays from seed %d (rerun with -kill-seed=%d)", seedVal, seedVal)
	rng := rand.New(rand.NewPCG(uint64(seedVal), 0))

	f := newFake(t)
	root := t.TempDir()
	ids := seed(t, root, n, seedOptions{lowPreKeys: func(i int) bool { return i%2 == 0 }})
	b := takeBaseline(t, f, root, ids)

	// How long a whole restore takes, measured on a copy of the same
	// stores, so that the kills land anywhere inside one.
	calib := t.TempDir()
	if out, err := exec.Command("cp", "-a", root+"/.", calib).CombinedOutput(); err != nil {
		t.Fatalf("copy the stores: %v\n%s", err, out)
	}
	svc := startService(t, f, calib)
	began := time.Now()
	svc.WaitConnected(n, 60*time.Second)
	restore := time.Since(began)
	svc.Stop()
	f.waitQuiet(t)
	if err := os.RemoveAll(calib); err != nil {
		t.Fatal(err)
	}
	t.Logf("a restore of %d sessions takes %v", n, restore)

	var connectedAtKill []int
	var runs []*e2e.Logs
	for i := range iterations {
		svc := startService(t, f, root, "LOG_LEVEL=debug")
		runs = append(runs, svc.Logs)
		delay := time.Duration(rng.Int64N(int64(restore) + 1))
		time.Sleep(delay) // the fault's timing, not a synchronisation
		connected := f.stats(t).Live
		svc.Kill()
		connectedAtKill = append(connectedAtKill, connected)
		t.Logf("kill %d: after %v, %d of %d sessions logged in", i+1, delay.Round(time.Millisecond), connected, n)
		f.waitQuiet(t)
	}

	svc = startService(t, f, root, "LOG_LEVEL=debug")
	runs = append(runs, svc.Logs)
	fl := svc.WaitConnected(n, 60*time.Second)
	if fl.Restore.Found != n || fl.Restore.Restored != n {
		t.Errorf("clean start after the kills: restore %+v, want %d found and restored", fl.Restore, n)
	}
	assertNoDoubleLogin(t, f, runs...)
	if got, want := f.sockets.logins.count(), f.stats(t).Logins; got != want {
		t.Errorf("the socket tracker saw %d logins, the fake server counts %d: the tracker misses some", got, want)
	}
	b.assertNothingLost(t, svc, f, 0)
	t.Logf("logged-in sessions at each kill: %v", connectedAtKill)
}

// TestDoubleLoginIsDetected checks the instrument the other tests rely on
// to say "never two live connections for one device": two processes
// restoring copies of the same store log one device in twice, and
// assertNoDoubleLogin must see it.
func TestDoubleLoginIsDetected(t *testing.T) {
	f := newFake(t)
	root, twin := t.TempDir(), t.TempDir()
	seedIDs(t, root, []string{"alice"}, seedOptions{userBase: "1555740"})
	if out, err := exec.Command("cp", "-a", root+"/.", twin).CombinedOutput(); err != nil {
		t.Fatalf("copy the store: %v\n%s", err, out)
	}
	first := startService(t, f, root, "LOG_LEVEL=debug")
	first.WaitState("alice", "connected", 20*time.Second)
	second := startService(t, f, twin, "LOG_LEVEL=debug")
	second.WaitState("alice", "connected", 20*time.Second)
	first.WaitState("alice", "conflict", 20*time.Second)
	probe := &errorRecorder{}
	assertNoDoubleLogin(probe, f, first.Logs, second.Logs)
	if len(probe.errs) == 0 {
		t.Error("two clients logged in on one device's keys, and assertNoDoubleLogin saw nothing")
	}
	t.Logf("assertNoDoubleLogin reports: %v", probe.errs)
}

// errorRecorder collects what an assertion reports instead of failing.
type errorRecorder struct{ errs []string }

func (r *errorRecorder) Helper() {}
func (r *errorRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
