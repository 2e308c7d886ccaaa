// Package pgtest starts a real PostgreSQL server for tests: Debian's
// postgresql binaries, initdb and pg_ctl, a temporary data and socket
// directory, loopback TCP on a free port, run as the postgres user (the
// server refuses to run as root). Without the binaries a test skips, except
// in CI (CI set), where it fails: .ci/run installs them.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
)

// Server is one running PostgreSQL server, stopped when the test that
// started it ends.
type Server struct {
	// Host and Port are where it listens (loopback TCP).
	Host string
	Port int
	// Dir holds its data directory, socket directory and log.
	Dir string

	bin  string
	cred *syscall.Credential
	dbs  atomic.Int64
}

// BinDir returns the directory of the newest installed PostgreSQL's
// server binaries (PG_BIN overrides it), or "" when there is none.
func BinDir() string {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		return dir
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return ""
}

// Start initialises and starts a server for tb, stopped (immediately, as a
// crash would) and removed in tb's cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if BinDir() == "" {
		missing(tb, "PostgreSQL server binaries (Debian package postgresql) not found")
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			missing(tb, "running as root, and there is no postgres user to run PostgreSQL as")
		}
	}
	s, err := Run()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Log(err)
		}
	})
	return s
}

// Run initialises and starts a server outside a test (the bench); Stop
// stops it and removes its directory.
func Run() (*Server, error) {
	bin := BinDir()
	if bin == "" {
		return nil, errors.New("pgtest: PostgreSQL server binaries (Debian package postgresql) not found")
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", bin: bin, Dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root, and there is no postgres user to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if s.Port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.dataDir(), "-l", filepath.Join(dir, "log"),
		"-o", fmt.Sprintf("-c listen_addresses=%s -p %d -k %s -c max_connections=300", s.Host, s.Port, dir)); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Stop stops the server at once (as a crash would) and removes its
// directory.
func (s *Server) Stop() error {
	err := s.run("pg_ctl", "stop", "-D", s.dataDir(), "-m", "immediate", "-w")
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// missing skips tb, or fails it in CI, where what is missing is installed.
func missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("pgtest: %s; CI must install it", why)
	}
	tb.Skipf("pgtest: %s", why)
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) run(name string, args ...string) error {
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "log"))
		return fmt.Errorf("pgtest: %s: %v\n%s\n%s", name, err, out, log)
	}
	return nil
}

// URL is the connection string of database db on this server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", s.Host, s.Port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	url, err := s.CreateDatabase(fmt.Sprintf("test_%d", s.dbs.Add(1)))
	if err != nil {
		tb.Fatal(err)
	}
	return url
}

// CreateDatabase creates an empty database called name and returns its
// URL.
func (s *Server) CreateDatabase(name string) (string, error) {
	db, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return s.URL(name), nil
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	addr, err := freeaddr.Pick()
	if err != nil {
		return 0, err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

// OpenMigrated opens a pool on a new database of this server, migrated to
// the service's schema (pgstore.Migrate), closed at tb's cleanup; it
// returns the database's URL too.
func (s *Server) OpenMigrated(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	url := s.NewDatabase(tb)
	ctx := context.Background()
	db, err := pgstore.Open(ctx, url, pgstore.PoolOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := pgstore.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	return db, url
}
