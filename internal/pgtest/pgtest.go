// Package pgtest starts a real PostgreSQL server for tests: Debian's
// postgresql binaries, initdb and pg_ctl, a temporary data and socket
// directory, loopback TCP on a free port, run as the postgres user (the
// server refuses to run as root). Without the binaries a test skips, except
// in CI (CI set), where it fails: .ci/run installs them.
package pgtest

import (
	"context"
	"database/sql"
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
	bin := BinDir()
	if bin == "" {
		missing(tb, "PostgreSQL server binaries (Debian package postgresql) not found")
	}
	s := &Server{Host: "127.0.0.1", bin: bin}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	s.Dir = dir
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			missing(tb, "running as root, and there is no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	s.Port = freePort(tb)
	s.run(tb, "initdb", "-D", s.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	s.run(tb, "pg_ctl", "start", "-w", "-t", "60", "-D", s.dataDir(), "-l", filepath.Join(dir, "log"),
		"-o", fmt.Sprintf("-c listen_addresses=%s -p %d -k %s -c max_connections=300", s.Host, s.Port, dir))
	tb.Cleanup(func() {
		cmd := s.command("pg_ctl", "stop", "-D", s.dataDir(), "-m", "immediate", "-w")
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Logf("pg_ctl stop: %v: %s", err, out)
		}
	})
	return s
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

func (s *Server) run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "log"))
		tb.Fatalf("pgtest: %s: %v\n%s\n%s", name, err, out, log)
	}
}

// URL is the connection string of database db on this server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", s.Host, s.Port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	db, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return s.URL(name)
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
