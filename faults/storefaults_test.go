package faults_test

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// storeFault is one broken session in TestStoreFaults: how it is broken and
// what the service must make of it.
type storeFault struct {
	id    string
	apply func(t *testing.T, sessionDir string) (ok bool, why string)
	state sessions.State
	code  sessions.Code
}

// TestStoreFaults puts broken sessions next to healthy ones in one
// SESSIONS_DIR: a store with a page of garbage in the middle, one cut to
// half its size, one whose header is zeroed, a session directory with no
// whatsapp.db, a store that cannot be written (chattr +i: as root, chmod
// stops nothing), and a session directory that is a symlink to a session
// elsewhere. Each broken one ends in its own state with its reason, at
// start-up and again after an operator's restore; its files are never
// rewritten or deleted; the symlink's target is untouched; and every
// healthy sibling is connected, undisturbed and loses nothing.
func TestStoreFaults(t *testing.T) {
	f := newFake(t)
	root := t.TempDir()
	elsewhere := t.TempDir()
	healthy := []string{"healthy0", "healthy1", "healthy2"}
	faults := []storeFault{
		{id: "garbage", apply: garbagePage, state: "failed", code: "store_corrupt"},
		{id: "truncated", apply: truncateHalf, state: "failed", code: "store_corrupt"},
		{id: "zeroheader", apply: zeroHeader, state: "failed", code: "store_corrupt"},
		// No whatsapp.db: the directory says a session was meant to be
		// here, but no device was ever stored: nothing to restore, it needs
		// pairing (DESIGN: "a session directory whose store holds no
		// paired device is listed as needs_pairing").
		{id: "missing", apply: removeDB, state: "needs_pairing", code: "store_missing"},
		{id: "readonly", apply: immutable, state: "failed", code: "store_unavailable"},
		{id: "symlinked", state: "failed", code: "store_unavailable"},
	}
	var seeded []string
	for _, fl := range faults {
		if fl.id != "symlinked" {
			seeded = append(seeded, fl.id)
		}
	}
	seedIDs(t, root, append(append([]string{}, healthy...), seeded...), seedOptions{userBase: "1555710"})
	// The symlink's target is a healthy session of another directory.
	seedIDs(t, elsewhere, []string{"target"}, seedOptions{userBase: "1555719"})
	target := filepath.Join(elsewhere, "session-target")
	if err := os.Symlink(target, filepath.Join(root, "session-symlinked")); err != nil {
		t.Fatal(err)
	}
	b := takeBaseline(t, f, root, healthy)

	var active []storeFault
	for _, fl := range faults {
		if fl.apply != nil {
			if ok, why := fl.apply(t, filepath.Join(root, "session-"+fl.id)); !ok {
				t.Logf("sub-case %s skipped: %s", fl.id, why)
				continue
			}
		}
		active = append(active, fl)
	}
	// What every broken session's directory holds now, byte for byte.
	before := map[string]map[string]fileState{}
	for _, fl := range active {
		before[fl.id] = treeState(t, filepath.Join(root, "session-"+fl.id))
	}
	targetBefore := treeState(t, target)

	svc := startService(t, f, root)
	check := func(when string) {
		t.Helper()
		for _, fl := range active {
			st := svc.WaitState(fl.id, fl.state, 20*time.Second)
			if e2e.ErrCode(st) != fl.code {
				t.Errorf("%s: %s is %s with error %v, want code %s", when, fl.id, st.State, st.Error, fl.code)
			}
			if st.Error == nil || st.Error.Message == "" {
				t.Errorf("%s: %s gives no reason: %v", when, fl.id, st)
				continue
			}
			t.Logf("%s: %s -> %s %s: %.160s", when, fl.id, st.State, e2e.ErrCode(st), st.Error.Message)
		}
		for _, id := range healthy {
			svc.WaitState(id, "connected", 20*time.Second)
		}
		if code, _, _ := svc.Raw("GET", "/healthz", "", nil); code != 200 {
			t.Errorf("%s: /healthz %d", when, code)
		}
	}
	check("start-up")
	siblings := byID(svc.Fleet())
	for id := range siblings {
		if !contains(healthy, id) {
			delete(siblings, id)
		}
	}

	// An operator's restore retries every failed session: they fail the
	// same way again, and the healthy ones are left alone.
	if code, out := svc.Call("POST", "/api/whatsapp/sessions/restore", ""); code != 202 {
		t.Fatalf("restore: %d %v", code, out)
	}
	e2e.WaitFor(t, 20*time.Second, "the operator's restore to retry every broken session", func() (bool, string) {
		logs := svc.Logs.String()
		for _, fl := range active {
			if strings.Count(logs, "🔄 Restoring session for "+fl.id+" from storage...") < 2 {
				return false, fl.id + " not retried yet"
			}
		}
		fl := svc.Fleet()
		return fl.Restore.Pending == 0, sprint(fl.Restore)
	}, svc.Logs)
	check("after an operator's restore")
	assertSiblingsUntouched(t, siblings, byID(svc.Fleet()))

	// Stopped, the broken ones' files are what they were.
	b.assertNothingLost(t, svc, f, 0)
	for _, fl := range active {
		after := treeState(t, filepath.Join(root, "session-"+fl.id))
		for name, was := range before[fl.id] {
			if now := after[name]; now != was {
				t.Errorf("%s: %s changed: before %+v, after %+v", fl.id, name, was, now)
			}
		}
		for name, now := range after {
			if _, ok := before[fl.id][name]; ok {
				continue
			}
			// What the service does with a directory that has no store: it
			// opens one, which makes SQLite create an empty whatsapp.db
			// with whatsmeow's schema and no device. Tolerated (it invents
			// no credentials), and said in the report.
			if fl.id == "missing" && name == "whatsapp.db" {
				if k := snapshotDevices(t, root, []string{"missing"})["missing"]; k.Paired {
					t.Errorf("missing: the store the service created holds a device: %s", k.short())
				}
				t.Logf("missing: the service created %s (%d bytes, no device) in a session directory that had none", name, now.Size)
				continue
			}
			t.Errorf("%s: %s appeared in the broken session's directory: %+v", fl.id, name, now)
		}
	}
	if now := treeState(t, target); !equalTrees(targetBefore, now) {
		t.Errorf("the symlink's target changed:\nbefore %v\nafter  %v", targetBefore, now)
	}
}

// garbagePage overwrites the page in the middle of the store with random
// bytes.
func garbagePage(t *testing.T, dir string) (bool, string) {
	path := filepath.Join(dir, "whatsapp.db")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	mid := fi.Size() / page / 2 * page
	garbage := make([]byte, page)
	_, _ = rand.Read(garbage)
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(garbage, mid); err != nil {
		t.Fatal(err)
	}
	return true, ""
}

// truncateHalf cuts the store to half its size, on a page boundary.
func truncateHalf(t *testing.T, dir string) (bool, string) {
	path := filepath.Join(dir, "whatsapp.db")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/4096/2*4096); err != nil {
		t.Fatal(err)
	}
	return true, ""
}

// zeroHeader zeroes the store's 100-byte database header.
func zeroHeader(t *testing.T, dir string) (bool, string) {
	fh, err := os.OpenFile(filepath.Join(dir, "whatsapp.db"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(make([]byte, 100), 0); err != nil {
		t.Fatal(err)
	}
	return true, ""
}

// removeDB leaves the session directory without its store.
func removeDB(t *testing.T, dir string) (bool, string) {
	if err := os.Remove(filepath.Join(dir, "whatsapp.db")); err != nil {
		t.Fatal(err)
	}
	return true, ""
}

// immutable makes the store and its directory unwritable even for root:
// chattr +i. The attribute is removed when the test ends, before the
// temporary directory is.
func immutable(t *testing.T, dir string) (bool, string) {
	paths := []string{filepath.Join(dir, "whatsapp.db"), dir}
	for i, p := range paths {
		if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
			for _, q := range paths[:i] {
				_ = exec.Command("chattr", "-i", q).Run()
			}
			return false, "chattr +i is not available here (" + strings.TrimSpace(string(out)) + "): " + err.Error()
		}
	}
	t.Cleanup(func() {
		for _, p := range paths {
			if out, err := exec.Command("chattr", "-i", p).CombinedOutput(); err != nil {
				t.Errorf("chattr -i %s: %v %s", p, err, out)
			}
		}
	})
	// As root, only the attribute stops a write: check it does.
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); err == nil {
		return false, "chattr +i did not stop a write into the directory"
	}
	return true, ""
}

func equalTrees(a, b map[string]fileState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
