package faults_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// What "nothing lost" means in this suite, checked after every fault:
//
//  1. every session paired before the fault is listed by the service after
//     recovery;
//  2. its device row (JID, LID, registration id, noise, identity and signed
//     prekey key pairs, ADV secret, account signature), read from its
//     store with the service stopped, is exactly what it was before the
//     fault (snapshotDevices, before and after);
//  3. it reaches connected, without pairing (the fake server counts no
//     new pairing), unless it is the session the fault was aimed at;
//  4. its siblings, the sessions the fault was not aimed at, see no state
//     change while the fault happens: same state, same since, no reconnect
//     (assertSiblingsUntouched, where a test aims at one session).
//
// baseline holds what 1 to 3 compare with.
type baseline struct {
	root     string
	keys     map[string]deviceKeys
	pairings int
}

// takeBaseline snapshots the devices of ids under root, with the service
// stopped, and the fake server's pairing count.
func takeBaseline(t *testing.T, f *fake, root string, ids []string) baseline {
	t.Helper()
	keys := snapshotDevices(t, root, ids)
	for id, k := range keys {
		if !k.Paired {
			t.Fatalf("baseline: %s holds no paired device", id)
		}
	}
	return baseline{root: root, keys: keys, pairings: f.stats(t).Pairings}
}

// assertNothingLost checks 1 to 3 of "nothing lost" on the running
// service svc, then stops it and checks the device rows. exempt sessions
// (the one a fault ended) need not be connected; newPairings is how many
// pairings the test itself made since the baseline.
func (b baseline) assertNothingLost(t *testing.T, svc *e2e.Service, f *fake, newPairings int, exempt ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, id := range exempt {
		skip[id] = true
	}
	want := 0
	for id := range b.keys {
		if !skip[id] {
			want++
		}
	}
	// 3: every session that is not exempt comes back connected...
	var listed map[string]sessions.Status
	e2e.WaitFor(t, 60*time.Second, fmt.Sprintf("the %d sessions of the baseline to be connected", want), func() (bool, string) {
		listed = byID(svc.Fleet())
		n := 0
		var notYet []string
		for id := range b.keys {
			switch {
			case skip[id]:
			case listed[id].State == "connected":
				n++
			case len(notYet) < 5:
				notYet = append(notYet, e2e.Show(listed[id]))
			}
		}
		return n == want, fmt.Sprintf("%d of %d; e.g. %v", n, want, notYet)
	}, svc.Logs)
	// 1: ...and every one is listed.
	for id := range b.keys {
		if _, ok := listed[id]; !ok {
			t.Errorf("session %s was paired before the fault and is not listed after it", id)
		}
	}
	// 3: ...without pairing.
	if got := f.stats(t).Pairings - b.pairings; got != newPairings {
		t.Errorf("the fake server saw %d pairings since the baseline, want %d: a session was paired again", got, newPairings)
	}
	// 2: with the service stopped, every device row is unchanged.
	svc.Stop()
	after := snapshotDevices(t, b.root, keysOf(b.keys))
	for id, k := range b.keys {
		if a := after[id]; a != k {
			t.Errorf("session %s: device changed across the fault:\nbefore %+v\nafter  %+v", id, k.short(), a.short())
		}
	}
}

// short is k without its secrets' bytes, for a failure message.
func (k deviceKeys) short() string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%+v", k)))
	return fmt.Sprintf("paired=%v jid=%s lid=%s reg=%d spk=%d keys#%s", k.Paired, k.JID, k.LID, k.RegistrationID, k.SignedPreKeyID, hex.EncodeToString(h[:6]))
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// assertSiblingsUntouched checks 4 of "nothing lost": each session in
// before is, in after, in the same state since the same moment, with no
// more reconnects or restarts.
func assertSiblingsUntouched(t *testing.T, before, after map[string]sessions.Status) {
	t.Helper()
	for id, b := range before {
		a, ok := after[id]
		switch {
		case !ok:
			t.Errorf("sibling %s is no longer listed", id)
		case a.State != b.State || a.Since != b.Since || a.Reconnects != b.Reconnects || a.Restarts != b.Restarts:
			t.Errorf("sibling %s changed during the fault:\nbefore %v\nafter  %v", id, b, a)
		}
	}
}

// fileState is a file's bytes (hashed), mode and symlink target, or its
// absence.
type fileState struct {
	Exists bool
	Size   int64
	Mode   fs.FileMode
	SHA256 string
	Link   string
}

func statFile(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fileState{Exists: true, Size: fi.Size(), Mode: fi.Mode()}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if st.Link, err = os.Readlink(path); err != nil {
			t.Fatal(err)
		}
	}
	if fi.Mode().IsRegular() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		st.SHA256 = hex.EncodeToString(h[:])
	}
	return st
}

// treeState is every entry under root (not following symlinks), by
// relative path.
func treeState(t *testing.T, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out[rel] = statFile(t, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
