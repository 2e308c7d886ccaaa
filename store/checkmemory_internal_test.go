package store

import (
	"context"
	"database/sql/driver"
	"os"
	"path/filepath"
	"testing"

	"modernc.org/sqlite"
)

// pageCacheUsed is the bytes s's open connection holds in its page cache.
func pageCacheUsed(t *testing.T, s *Session) int {
	t.Helper()
	var used int
	err := withDriverConn(context.Background(), s.db, func(dc driver.Conn) error {
		cur, _, err := dc.(sqlite.DBStatus).Status(sqlite.DBStatusCacheUsed, false)
		used = cur
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// A store opened without a clean marker is checked with quick_check, which
// reads every page into the connection's page cache; Open gives that cache
// back, so that the dozens of stores a restore has open at once do not
// each hold their whole file (stores that never had a clean close peaked
// at 600 KiB each instead of 280). Nothing is lost: the store opens
// checked, with its device.
func TestCheckedStoreDoesNotKeepItsPagesCached(t *testing.T) {
	root := t.TempDir()
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	s, err := d.Open(ctx, "a", OpenOptions{Create: true}) // whatsmeow's schema: a page per table and index
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, sessionPrefix+"a", cleanFile)); err != nil {
		t.Fatal(err)
	}

	s, err = d.Open(ctx, "a", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.Checked || s.Device == nil {
		t.Fatalf("Open without the marker: checked %v, device %v; want a checked store with its device", s.Checked, s.Device)
	}
	afterOpen := pageCacheUsed(t, s)
	if err := quickCheck(ctx, s.db); err != nil {
		t.Fatal(err)
	}
	afterCheck := pageCacheUsed(t, s)
	t.Logf("page cache: %d bytes after Open, %d after another quick_check", afterOpen, afterCheck)
	if afterOpen*2 > afterCheck {
		t.Errorf("after Open the connection caches %d bytes, more than half of what a quick_check leaves (%d): Open keeps the pages its check read", afterOpen, afterCheck)
	}
}
