package faults_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
)

// TestSIGTERMWithManySessionsConnected: SIGTERM with many sessions connected
// (half of them wrote to their store at login, a few after it) ends the process with exit
// code 0 within SHUTDOWN_TIMEOUT, after every session disconnected and
// closed its store: the log says so, every store is marked clean, no
// store is left with frames in its WAL (a clean close checkpoints the WAL and truncates it to nothing; a
// kill -9 leaves its frames for the next open to recover), and the fake server
// sees no live connection. The next start restores every session: nothing
// lost.
func TestSIGTERMWithManySessionsConnected(t *testing.T) {
	const shutdownTimeout = 10 * time.Second
	n := *termSessions
	f := newFake(t)
	root := t.TempDir()
	ids := seed(t, root, n, seedOptions{lowPreKeys: func(i int) bool { return i%2 == 0 }})
	b := takeBaseline(t, f, root, ids)

	// A store whose connection reopened after the login keeps it (and so
	// its WAL) open until the shutdown closes it, which is what this test
	// is about.
	svc := startService(t, f, root, fmt.Sprintf("SHUTDOWN_TIMEOUT=%v", shutdownTimeout), "STORE_IDLE_TIMEOUT=10m")
	svc.WaitConnected(n, 60*time.Second)
	if st := f.stats(t); st.Live != n {
		t.Fatalf("fake server: %d live connections for %d connected sessions", st.Live, n)
	}
	// The sessions with no prekeys left uploaded a batch at login, and
	// their store's connection closed once they were connected
	// (Session.Rest), checkpointing it. A freshly paired session writes
	// after its login too (the phone's initial app state sync): its
	// connection reopens and stays open with frames in its WAL.
	paired := []string{"fresh0", "fresh1", "fresh2"}
	for _, id := range paired {
		svc.Pair(id)
	}
	e2e.WaitFor(t, 20*time.Second, "every freshly paired session to have written after its login and shown its push name", func() (bool, string) {
		pending := 0
		for _, id := range paired {
			if walSize(t, root, id) == 0 || svc.Status(id).PushName == nil {
				pending++
			}
		}
		return pending == 0, fmt.Sprint(pending, " stores with an empty WAL or no push name yet")
	})
	all := append(append([]string(nil), ids...), paired...)
	for _, id := range all {
		if hasCleanMarker(t, root, id) {
			t.Errorf("%s has a clean marker while the service has its store open", id)
		}
	}

	code, took := svc.Terminate(shutdownTimeout + 5*time.Second)
	t.Logf("%d sessions: SIGTERM to exit took %v", n, took)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > shutdownTimeout {
		t.Errorf("exit took %v, more than SHUTDOWN_TIMEOUT=%v", took, shutdownTimeout)
	}
	logs := svc.Logs.String()
	for _, line := range []string{
		`"msg":"shutting down"`,
		fmt.Sprintf(`"msg":"stopping sessions","count":%d`, len(all)),
		`"msg":"stopped: every session disconnected and its store closed"`,
	} {
		if !strings.Contains(logs, line) {
			t.Errorf("log line %s missing; tail:\n%s", line, svc.Logs.Tail(20))
		}
	}
	stopping := false
	for _, rec := range svc.Logs.Records() {
		stopping = stopping || rec["msg"] == "shutting down"
		// A freshly paired session may still be fetching the rest of its
		// app state (after the push name) when the shutdown cuts it off:
		// whatsmeow logs that fetch's failure, and the next start fetches
		// it again. Any other error is the shutdown's.
		msg, _ := rec["msg"].(string)
		if stopping && rec["level"] == "ERROR" &&
			!(slices.Contains(paired, fmt.Sprint(rec["session_id"])) && strings.HasPrefix(msg, "Failed to do initial fetch of app state")) {
			t.Errorf("error logged during the shutdown: %v", rec)
		}
	}
	for _, id := range all {
		// The service keeps the WAL file (SQLITE_FCNTL_PERSIST_WAL), but a
		// clean close checkpoints it and truncates it to nothing, and
		// marks the store clean.
		if n := walSize(t, root, id); n != 0 {
			t.Errorf("%s's WAL holds %d bytes after the shutdown: its store was not closed cleanly", id, n)
		}
		if !hasCleanMarker(t, root, id) {
			t.Errorf("%s has no clean marker after the shutdown", id)
		}
	}
	e2e.WaitFor(t, 5*time.Second, "the fake server to see no live connection", func() (bool, string) {
		st := f.stats(t)
		return st.Live == 0 && f.sockets.open() == 0, fmt.Sprint(st.Live, " live")
	})

	first := svc.Logs
	svc = startService(t, f, root)
	for _, id := range paired {
		svc.WaitState(id, "connected", 20*time.Second)
	}
	b.assertNothingLost(t, svc, f, len(paired))
	assertNoDoubleLogin(t, f, first, svc.Logs)
}

// walSize is the size of session id's -wal file, 0 if there is none.
func walSize(t *testing.T, root, id string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(root, "session-"+id, "whatsapp.db-wal"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// hasCleanMarker reports whether session id's store holds the clean marker
// the service writes when it closes a store cleanly.
func hasCleanMarker(t *testing.T, root, id string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(root, "session-"+id, "clean-close"))
	return err == nil
}
