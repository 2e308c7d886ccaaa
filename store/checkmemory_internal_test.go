package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// dirWithStores is a new Dir holding a closed store (whatsmeow's schema: a
// page per table and index) for each id, with its clean marker unless it
// is in unclean.
func dirWithStores(t *testing.T, ids []string, unclean ...string) *Dir {
	t.Helper()
	root := t.TempDir()
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	for _, id := range ids {
		s, err := d.Open(context.Background(), id, OpenOptions{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range unclean {
		if err := os.Remove(filepath.Join(root, sessionPrefix+id, cleanFile)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// A store opened without a clean marker is checked with quick_check, which
// reads every page into the connection's page cache; Open gives that cache
// back, so that the dozens of stores a restore has open at once do not
// each hold their whole file (stores that never had a clean close peaked
// at 600 KiB each instead of 280). Nothing is lost: the store opens
// checked, with its device.
func TestCheckedStoreDoesNotKeepItsPagesCached(t *testing.T) {
	d := dirWithStores(t, []string{"a"}, "a")
	ctx := context.Background()
	s, err := d.Open(ctx, "a", OpenOptions{})
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

// At most the capacity of Dir.checks quick_checks run at once: each reads
// its whole store into the page cache, and a restore of stores that never
// had a clean close opened dozens at once, which raised its peak memory by
// a third. A store waiting for a slot has not opened its connection yet;
// a store with a clean marker needs no slot.
func TestQuickChecksWaitForASlot(t *testing.T) {
	d := dirWithStores(t, []string{"clean", "unclean"}, "unclean")
	ctx := context.Background()
	for range cap(d.checks) {
		d.checks <- struct{}{}
	}

	clean, err := d.Open(ctx, "clean", OpenOptions{})
	if err != nil {
		t.Fatalf("a clean store waited for a check slot: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if s, err := d.Open(short, "unclean", OpenOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with every check slot taken: %v, want it to wait until its context ends", err)
	}
	d.mem.mu.Lock()
	peak := d.mem.peak
	d.mem.mu.Unlock()
	if peak != 1 {
		t.Errorf("%d connections were open at once, want 1 (the clean store's): the waiting store opened its connection", peak)
	}
	clean.Close()

	for range cap(d.checks) {
		<-d.checks
	}
	s, err := d.Open(ctx, "unclean", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.Checked {
		t.Error("the store without a clean marker was not checked")
	}
}
