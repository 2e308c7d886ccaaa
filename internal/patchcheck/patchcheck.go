// Package patchcheck is for the tests that guard a patched dependency: a
// copy of the pinned version under third_party, a patch file describing
// the difference, and a replace in go.mod. Check fails such a test when
// either side moved: go.mod requiring another version (the copy and the
// patch must be redone from it), the replace gone, or a patched file
// changed since its hash was recorded.
package patchcheck

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Copy is one patched dependency.
type Copy struct {
	// Module is its module path, as go.mod requires it.
	Module string
	// Dir is the patched copy, relative to the repository's root
	// (third_party/...); go.mod must replace Module with "./"+Dir.
	Dir string
	// Patch is the patch file, relative to the root; its first line ends
	// with the version it was made on.
	Patch string
	// Files are the files the patch changes, relative to Dir, with the
	// sha256 of each as patched.
	Files map[string]string
}

// Check reports through t every way the repository at root moved away
// from c.
func Check(t testing.TB, root string, c Copy) {
	t.Helper()
	required, replaced := "", ""
	f, err := os.Open(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 2 && fields[0] == c.Module:
			required = fields[1]
		case len(fields) == 4 && fields[0] == "replace" && fields[1] == c.Module && fields[2] == "=>":
			replaced = fields[3]
		}
	}
	if want := "./" + c.Dir; replaced != want {
		t.Errorf("go.mod replaces %s with %q, want %s", c.Module, replaced, want)
	}
	patch, err := os.ReadFile(filepath.Join(root, c.Patch))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(patch), "\n")
	if required == "" || !strings.HasSuffix(first, " "+required) {
		t.Errorf("go.mod requires %s %s, but the patch was made on %q: redo %s from the new version and review the patch", c.Module, required, first, c.Dir)
	}
	for name, want := range c.Files {
		b, err := os.ReadFile(filepath.Join(root, c.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s/%s changed (sha256 %s): check that %s still describes it, then update the hash", c.Dir, name, got, c.Patch)
		}
	}
}
