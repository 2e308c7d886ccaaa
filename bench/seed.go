package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
	"golang.org/x/sync/errgroup"
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
// seeding the missing ones (fakeserver.SeedStores, closed cleanly as the
// service leaves them) on workers goroutines.
func ensureSeeded(ctx context.Context, dir string, n, workers int, logf func(string, ...any)) error {
	have := seededCount(dir)
	if have >= n {
		return nil
	}
	began := time.Now()
	logf("seeding sessions %d..%d into %s (%d workers)", have, n-1, dir, workers)
	seeds := make([]fakeserver.Seed, 0, n-have)
	for i := have; i < n; i++ {
		seeds = append(seeds, fakeserver.Seed{ID: sessionID(i), User: sessionUser(i)})
	}
	if err := fakeserver.SeedStores(ctx, dir, seeds, fakeserver.SeedOptions{Workers: workers, CleanClose: true}); err != nil {
		return fmt.Errorf("seed: %w", err)
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
	var g errgroup.Group
	g.SetLimit(max(2, runtime.NumCPU()))
	for i := range n {
		name := "session-" + sessionID(i)
		g.Go(func() error { return copyDir(filepath.Join(src, name), filepath.Join(dst, name), dbOnly) })
	}
	return g.Wait()
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
