package store

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

const (
	sessionPrefix = "session-"
	dbFile        = "whatsapp.db"
	stoppedFile   = "stopped"
	lockFile      = ".lock"
	apiKeyFile    = ".api-key"
	// webhookSecretFile is not a session-* entry, so Discover skips it.
	webhookSecretFile = ".webhook-secret"
	dirMode           = 0o700
	fileMode          = 0o600
)

// Dir is an open SESSIONS_DIR, owned by this process until Close.
type Dir struct {
	root          string
	lock          *os.File
	groupWritable bool
	// mem counts the open connections of the stores opened here, and
	// gives memory back after many closed (see reclaimer).
	mem *reclaimer
	// checks holds a slot for each quick_check running: each reads its
	// whole store into the page cache, so many at once raised a restore's
	// peak memory without finishing any sooner on a few cores.
	checks chan struct{}
	// replaced is set once CheckLock found the directory replaced: from
	// then on nothing is opened or written through its paths.
	replaced atomic.Bool
}

// OpenDir creates root if needed (0700) and takes its lock. A second
// process on the same directory gets ErrLocked: two clients on one set of
// keys knock each other off WhatsApp.
func OpenDir(root string) (*Dir, error) {
	if strings.ContainsAny(root, "?#") {
		return nil, fmt.Errorf("sessions directory %q: '?' and '#' are not allowed in the path", root)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("sessions directory %q: %w", root, err)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, fmt.Errorf("create sessions directory %s: %w", abs, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("sessions directory %s: %w", abs, err)
	}
	if err := checkDirMode(abs, fi.Mode()); err != nil {
		return nil, err
	}
	lockPath := filepath.Join(abs, lockFile)
	// O_NOFOLLOW: a symlink planted as .lock would make the service
	// truncate and write whatever file it points to. The lock file stays
	// between runs, so it is opened, not created exclusively.
	f, err := openNoFollow(lockPath, os.O_RDWR|os.O_CREATE, "lock file")
	if err != nil {
		return nil, err
	}
	// flock is released by the kernel when the process dies, so a kill -9
	// never leaves a stale lock behind.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := make([]byte, 32)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by pid %s; stop that process first (two processes on one set of keys log each other out)",
				ErrLocked, abs, strings.TrimSpace(string(holder[:n])))
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Dir{root: abs, lock: f, groupWritable: fi.Mode().Perm()&0o020 != 0, mem: newReclaimer(),
		checks: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}, nil
}

// checkDirMode refuses a sessions directory that every local user may
// write to. Such a user could plant a session directory (with credentials
// of their choosing), an .api-key before the first start, or a symlink
// where the service writes: refusing is the only safe answer. A directory
// writable by its group is only warned about (GroupWritable): sharing one
// with an operators' group is a deliberate choice some deployments make.
func checkDirMode(path string, mode fs.FileMode) error {
	if !mode.IsDir() {
		return fmt.Errorf("sessions directory %s is not a directory", path)
	}
	if mode.Perm()&0o002 != 0 {
		return fmt.Errorf("sessions directory %s is writable by every user (mode %04o), who could plant sessions or keys there: run chmod 700 %s",
			path, mode.Perm(), path)
	}
	return nil
}

// openNoFollow opens path without following a symlink in its place (what
// names it in errors), and refuses anything but a regular file.
func openNoFollow(path string, flag int, what string) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, fileMode)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s %s is a symlink, which is never followed: remove it", what, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", what, path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s %s is not a regular file: remove it", what, path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckLock returns ErrDirReplaced once the lock file at the directory's
// path is not the file this process locked: the directory was removed
// (and perhaps made again, and locked by another process) while the
// service ran. The flock lives on the old file, so it no longer keeps a
// second process out, and both would log in with the same keys. From then
// on no store opens, no connection reopens and no clean marker is
// written: the paths may name another process's files.
func (d *Dir) CheckLock() error {
	if d.replaced.Load() {
		return ErrDirReplaced
	}
	if d.lock == nil {
		return nil
	}
	held, err := d.lock.Stat()
	if err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	path := filepath.Join(d.root, lockFile)
	at, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.replaced.Store(true)
		return fmt.Errorf("%w: %s is gone", ErrDirReplaced, path)
	case err == nil && !os.SameFile(held, at):
		d.replaced.Store(true)
		return fmt.Errorf("%w: %s is another file than the one this process locked", ErrDirReplaced, path)
	case err != nil:
		return fmt.Errorf("lock file: %w", err)
	}
	return nil
}

// Close releases the lock.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	d.mem.stop()
	err := d.lock.Close()
	d.lock = nil
	return err
}

// GroupWritable reports whether the sessions directory is writable by its
// group, whose members could then plant or replace sessions; the caller
// warns about it.
func (d *Dir) GroupWritable() bool { return d.groupWritable }

// Root is the absolute path of the sessions directory.
func (d *Dir) Root() string { return d.root }

// SessionPath is the directory of session id, after validating id.
func (d *Dir) SessionPath(id string) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", err
	}
	return filepath.Join(d.root, sessionPrefix+id), nil
}

// Stored is one session directory found on disk.
type Stored struct {
	ID string
	// Stopped is true when the operator stopped the session; the start-up
	// restore leaves it stopped.
	Stopped bool
}

// Discover lists the session directories, sorted by id. Entries whose name
// is not a valid session directory are skipped; a symlinked session
// directory is listed (so it can be reported) but never followed.
func (d *Dir) Discover() ([]Stored, error) { return discover(d.root) }

// discover is Discover on the sessions directory root.
func discover(root string) ([]Stored, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read sessions directory %s: %w", root, err)
	}
	var out []Stored
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, sessionPrefix) {
			continue
		}
		id := strings.TrimPrefix(name, sessionPrefix)
		if ValidateID(id) != nil {
			continue
		}
		if !e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		s := Stored{ID: id}
		if e.IsDir() {
			_, err := os.Lstat(filepath.Join(root, name, stoppedFile))
			s.Stopped = err == nil
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Exists reports whether session id has a directory (or a symlink there).
func (d *Dir) Exists(id string) (bool, error) {
	p, err := d.SessionPath(id)
	if err != nil {
		return false, err
	}
	_, err = os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// sessionDir returns the directory of id, refusing a symlink. With create,
// a missing directory is made (0700); without, it is ErrNotFound.
func (d *Dir) sessionDir(id string, create bool) (string, error) {
	p, err := d.SessionPath(id)
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := os.Mkdir(p, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%w: create %s: %v", ErrUnavailable, filepath.Base(p), err)
		}
		return d.sessionDir(id, false)
	case errors.Is(err, fs.ErrNotExist):
		return "", ErrNotFound
	case err != nil:
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("%w: %s is a symlink, which is never followed", ErrUnavailable, filepath.Base(p))
	case !fi.IsDir():
		return "", fmt.Errorf("%w: %s is not a directory", ErrUnavailable, filepath.Base(p))
	}
	return p, nil
}

// SetStopped records (or clears) that the operator stopped session id, so
// that the next start-up leaves it stopped. Recording makes the session's
// directory if it has none yet.
func (d *Dir) SetStopped(id string, stopped bool) error {
	p, err := d.sessionDir(id, stopped)
	if err != nil {
		return err
	}
	marker := filepath.Join(p, stoppedFile)
	if !stopped {
		if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clear stop marker of %s: %w", id, err)
		}
		return nil
	}
	// O_EXCL: a marker already there (even a symlink) records the stop as
	// well, and nothing is ever written through a link.
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write stop marker of %s: %w", id, err)
	}
	_, err = f.WriteString("stopped by the operator\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write stop marker of %s: %w", id, err)
	}
	return nil
}

// Remove deletes session id's directory and everything in it. A symlink
// in its place is removed, never followed.
func (d *Dir) Remove(id string) error {
	p, err := d.SessionPath(id)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove session %s: %w", id, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return os.Remove(p)
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove session %s: %w", id, err)
	}
	return nil
}

// APIKey returns the key kept in SESSIONS_DIR/.api-key, creating a strong
// random one (0600) on first use. It returns the file's path too, so the
// caller can log where the key is without logging the key.
func (d *Dir) APIKey() (key, path string, created bool, err error) {
	return d.keyFile(apiKeyFile, "API key", func() (string, error) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		return base64.RawURLEncoding.EncodeToString(raw), nil
	})
}

// WebhookSecret returns the webhook signing secret kept in
// SESSIONS_DIR/.webhook-secret, creating one with generate (0600) on first
// use, like APIKey.
func (d *Dir) WebhookSecret(generate func() (string, error)) (secret, path string, created bool, err error) {
	return d.keyFile(webhookSecretFile, "webhook secret", generate)
}

// keyFile returns the secret kept in the file name (what names it in
// errors), writing generate's (0600, never through a symlink) when there
// is none.
func (d *Dir) keyFile(name, what string, generate func() (string, error)) (key, path string, created bool, err error) {
	path = filepath.Join(d.root, name)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, syscall.ELOOP):
		return "", path, false, fmt.Errorf("%s file %s is a symlink, which is never followed: put the %s in the file itself (chmod 600), or delete it to have a new one generated", what, path, what)
	case err == nil:
		key, err = readKey(f, path, what)
		return key, path, false, err
	case !errors.Is(err, fs.ErrNotExist):
		return "", path, false, fmt.Errorf("read %s file: %w", what, err)
	}
	if key, err = generate(); err != nil {
		return "", path, false, fmt.Errorf("generate %s: %w", what, err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return "", path, false, fmt.Errorf("write %s file: %w", what, err)
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return "", path, false, fmt.Errorf("write %s file: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return "", path, false, fmt.Errorf("write %s file: %w", what, err)
	}
	return key, path, true, nil
}

// readKey reads the key from an open key file, refusing one that is not a
// regular file or that others than its owner may read or write.
func readKey(f *os.File, path, what string) (string, error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read %s file: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s file %s is not a regular file: delete it to have a new one generated", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s file %s is readable or writable by group or others (mode %04o): run chmod 600 %s", what, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s file: %w", what, err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("%s file %s is empty: delete it to have a new one generated", what, path)
	}
	return key, nil
}
