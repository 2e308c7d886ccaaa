package webhooks_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// publishUntilKilled is the child process: it publishes events from 20
// sessions (about 10,000 a second) and prints each event's id once its
// done reports it committed, until it is killed.
func publishUntilKilled(path, round string) {
	o, err := webhooks.Open(webhooks.Options{Path: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := make(chan string, 1024)
	go func() {
		for id := range out {
			// One write per line: a kill never leaves half an id.
			_, _ = os.Stdout.WriteString(id + "\n")
		}
	}()
	for i := 0; ; i++ {
		ev := event(fmt.Sprintf("r%s_s%02d", round, i%20), i)
		o.Publish([]sessions.Event{ev}, func(err error) {
			if err == nil {
				out <- ev.ID
			}
		})
		if i%10 == 9 {
			time.Sleep(time.Millisecond)
		}
	}
}

// kill -9 at an arbitrary moment: every event whose publisher heard
// "committed" is in the outbox afterwards.
func TestKill9KeepsEveryCommittedEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "OUTBOX_CHILD_PATH="+path, fmt.Sprintf("OUTBOX_CHILD_ROUND=%d", round))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var committed []string
		sc := bufio.NewScanner(stdout)
		for len(committed) < 500*(round+1) && sc.Scan() {
			committed = append(committed, strings.TrimSpace(sc.Text()))
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // what it printed before dying was committed too
			committed = append(committed, strings.TrimSpace(sc.Text()))
		}
		_ = cmd.Wait()
		if len(committed) < 500 {
			t.Fatalf("round %d: the child reported only %d commits", round, len(committed))
		}
		// Opening recovers the WAL the killed process left.
		closeOutbox(t, open(t, testOptions(filepath.Dir(path))))
		kept := map[string]bool{}
		db, _ := dbOf(t, path)
		rows, err := db.Query(`SELECT id FROM events`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			kept[id] = true
		}
		rows.Close()
		var missing []string
		for _, id := range committed {
			if !kept[id] {
				missing = append(missing, id)
			}
		}
		t.Logf("round %d: killed after %d reported commits; %d events kept in all", round, len(committed), len(kept))
		if len(missing) > 0 {
			t.Fatalf("round %d: %d of %d events reported committed are missing after kill -9: %q", round, len(missing), len(committed), missing)
		}
	}
}
