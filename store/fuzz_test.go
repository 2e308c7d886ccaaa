package store_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// validID is the senderId rule, ^[A-Za-z0-9_-]{1,64}$, written out by hand
// so that the fuzzer checks IDPattern against something other than itself.
// It works on bytes: any byte outside ASCII (a look-alike letter, a
// combining mark) makes the id invalid.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// FuzzValidateID checks that ValidateID accepts exactly the senderId rule,
// and that every path built from an accepted id is a direct child of the
// sessions directory named session-{id}: no id reaches outside it.
func FuzzValidateID(f *testing.F) {
	for _, seed := range []string{
		"", "a", "user123", "A-b_c", "-", "_", "--", "0",
		strings.Repeat("x", 64), strings.Repeat("x", 65), strings.Repeat("é", 32),
		".", "..", "...", "../x", "..\\x", "x/..", "a/b", "a\\b", "/", "//", "/etc/passwd",
		"%2e%2e", "%2E%2E%2F", "..%2f..%2fetc", "a%2Fb", "%00",
		"a\x00b", "a\x00", "\x00", "a\nb", "a\n", "\na", "a\r", "a\t", " a", "a ", "a b",
		"session-x", "session-", ".lock", ".api-key", "stopped", "whatsapp.db",
		"ａｂｃ",               // fullwidth letters
		"аdmin",             // Cyrillic а
		"a\u200bb",          // zero-width space
		"a\u2215b",          // division slash
		"a\u2044b",          // fraction slash
		"\u2024\u2024",      // one-dot leaders
		"ﬁ",                 // ligature
		"a\u0301",           // combining accent
		"\xff", "a\xc0\xaf", // invalid UTF-8, an overlong '/'
		"$(id)", "a;b", "a*", "a?", "a#b", "~", "~root", "C:", "a:b", "NUL", "con",
	} {
		f.Add(seed)
	}
	dir, err := store.OpenDir(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dir.Close() })
	root := dir.Root()

	f.Fuzz(func(t *testing.T, id string) {
		want := validID(id)
		err := store.ValidateID(id)
		if (err == nil) != want {
			t.Fatalf("ValidateID(%q) = %v, want valid=%v", id, err, want)
		}
		if err != nil && !errors.Is(err, store.ErrInvalidID) {
			t.Fatalf("ValidateID(%q) = %v, not ErrInvalidID", id, err)
		}

		p, err := dir.SessionPath(id)
		if !want {
			if !errors.Is(err, store.ErrInvalidID) || p != "" {
				t.Fatalf("SessionPath(%q) = %q, %v; want ErrInvalidID", id, p, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("SessionPath(%q) = %v", id, err)
		}
		if filepath.Dir(p) != root || filepath.Base(p) != "session-"+id || p != root+string(filepath.Separator)+"session-"+id {
			t.Fatalf("SessionPath(%q) = %q: not %s/session-%s", id, p, root, id)
		}
		if rel, err := filepath.Rel(root, p); err != nil || rel != "session-"+id {
			t.Fatalf("SessionPath(%q) = %q is %q relative to the root (%v)", id, p, rel, err)
		}
	})
}
