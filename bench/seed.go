package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// The template is one SESSIONS_DIR holding the most sessions any run asked
// for so far; countFile records how many of them are complete. A run with N
// sessions copies the first N session directories into a fresh directory,
// so every run restores the same untouched stores, and seeding (SQLite
// commits and key generation: 25 s for 10,000 sessions on 2 CPUs) is paid
// once.
const countFile = ".bench-seeded"

// sessionID and sessionUser name the i-th seeded session and its phone
// number; the fake server accepts the login of any number SeedDevice saw.
func sessionID(i int) string   { return fmt.Sprintf("s%05d", i) }
func sessionUser(i int) string { return fmt.Sprintf("1555%07d", i) }

// ensureSeeded makes sure the template at dir holds at least n sessions,
// seeding the missing ones on workers goroutines.
func ensureSeeded(ctx context.Context, dir string, n, workers int, logf func(string, ...any)) error {
	have := seededCount(dir)
	if have >= n {
		return nil
	}
	began := time.Now()
	logf("seeding sessions %d..%d into %s (%d workers)", have, n-1, dir, workers)
	d, err := store.OpenDir(dir)
	if err != nil {
		return err
	}
	// The lock must go before the service opens a copy; Close is idempotent.
	defer d.Close()

	empty, err := emptyStore(ctx, dir)
	if err != nil {
		return err
	}
	var (
		next     atomic.Int64
		done     atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		seedErrs []error
	)
	next.Store(int64(have))
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := seedOne(ctx, d, empty, i); err != nil {
					errMu.Lock()
					seedErrs = append(seedErrs, err)
					errMu.Unlock()
					return
				}
				if c := done.Add(1); c%1000 == 0 {
					logf("  seeded %d/%d (%v)", int(c)+have, n, time.Since(began).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	if len(seedErrs) > 0 {
		return fmt.Errorf("seed: %w", seedErrs[0])
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, countFile), []byte(strconv.Itoa(n)+"\n"), 0o600); err != nil {
		return err
	}
	logf("seeded %d sessions in %v", n-have, time.Since(began).Round(time.Millisecond))
	return nil
}

// seededCount is how many complete sessions the template holds.
func seededCount(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, countFile))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// emptyStore returns the bytes of a store file with whatsmeow's schema
// and no device, made once with the service's own store.Open. Starting
// every session from a copy skips the schema migrations, the costliest part
// of seeding.
func emptyStore(ctx context.Context, dir string) ([]byte, error) {
	scratch, err := os.MkdirTemp(filepath.Dir(dir), "empty-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	d, err := store.OpenDir(scratch)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	s, err := d.Open(ctx, "empty", store.OpenOptions{Create: true})
	if err != nil {
		return nil, err
	}
	// Closing the last connection checkpoints the WAL into the main file.
	if err := s.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(scratch, "session-empty", "whatsapp.db"))
}

// seedOne writes session i: a copy of the empty store, then a paired device.
// A half-written session from an interrupted run is overwritten.
func seedOne(ctx context.Context, d *store.Dir, empty []byte, i int) error {
	id := sessionID(i)
	p, err := d.SessionPath(id)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p, "whatsapp.db"), empty, 0o600); err != nil {
		return err
	}
	s, err := d.Open(ctx, id, store.OpenOptions{})
	if err != nil {
		return fmt.Errorf("open %s: %w", id, err)
	}
	if _, err := fakeserver.SeedDevice(ctx, s.Container, sessionUser(i)); err != nil {
		s.Close()
		return fmt.Errorf("seed %s: %w", id, err)
	}
	return s.Close()
}

// copySessions makes dst a fresh SESSIONS_DIR holding the first n sessions
// of the template src. The copies are real files: the service writes to
// its stores, and the template must stay as seeded. With dbOnly only each
// session's whatsapp.db is copied.
func copySessions(src, dst string, n int, dbOnly bool) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range max(2, runtime.NumCPU()) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				name := "session-" + sessionID(i)
				if err := copyDir(filepath.Join(src, name), filepath.Join(dst, name), dbOnly); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// copyDir copies the regular files of one session directory (whatsapp.db
// alone with dbOnly).
func copyDir(src, dst string, dbOnly bool) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || dbOnly && e.Name() != "whatsapp.db" {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies one file, which must not exist at dst yet (0600).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
