package http_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
)

// connCounts records what a ConnLimit reports.
type connCounts struct {
	mu                        sync.Mutex
	open, maxOpen             int
	refused, evicted, reports int
	idle                      int
}

func (c *connCounts) HTTPConnections(_ string, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open, c.maxOpen = open, max(c.maxOpen, open)
	c.reports++
}

func (c *connCounts) HTTPConnectionRefused(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused++
}

func (c *connCounts) HTTPConnectionEvicted(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evicted++
}

func (c *connCounts) get() (open, maxOpen, refused, evicted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.maxOpen, c.refused, c.evicted
}

// limitedServer serves a capped listener on loopback: /ok answers at once,
// /block waits until release is closed.
func limitedServer(t *testing.T, capacity int) (addr string, counts *connCounts, release chan struct{}, blocked chan struct{}) {
	t.Helper()
	counts = &connCounts{}
	release, blocked = make(chan struct{}), make(chan struct{}, 100)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/block", func(w http.ResponseWriter, _ *http.Request) {
		blocked <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
	limit := api.NewConnLimit("api", capacity, counts)
	srv := api.NewServer(mux, nil, limit)
	// Also count the connections idle between requests, so that a test can
	// wait until the server has seen a connection go idle.
	hook := srv.ConnState
	idle := map[net.Conn]bool{}
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		hook(c, s)
		counts.mu.Lock()
		defer counts.mu.Unlock()
		if s == http.StateIdle {
			idle[c] = true
		} else {
			delete(idle, c)
		}
		counts.idle = len(idle)
	}
	addr = serve(t, srv, limit)
	// Registered after serve's, so it runs first: blocked handlers return
	// before the server closes.
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return addr, counts, release, blocked
}

// serve runs srv on a loopback port, through limit's listener unless limit
// is nil, until the test ends; it returns the address.
func serve(t *testing.T, srv *http.Server, limit *api.ConnLimit) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = ln
	if limit != nil {
		l = limit.Listener(ln)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// keepAlive is one client connection kept open between requests.
type keepAlive struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{Conn: c, r: bufio.NewReader(c)}
}

// send writes a GET of path without reading the answer.
func (k *keepAlive) send(t *testing.T, path string) {
	t.Helper()
	if _, err := fmt.Fprintf(k, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
}

// get sends a GET of path and reads its answer; an error means the server
// closed the connection.
func (k *keepAlive) get(t *testing.T, path string) (string, error) {
	t.Helper()
	k.send(t, path)
	return k.read()
}

func (k *keepAlive) read() (string, error) {
	_ = k.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// closedByServer reports whether the server closed k, waiting up to 5 s.
func (k *keepAlive) closedByServer() bool {
	_ = k.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := k.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	e2e.WaitFor(t, 5*time.Second, "a condition", func() (bool, string) { return cond(), "" })
}

func TestConnectionCapClosesTheOldestIdleConnectionForANewOne(t *testing.T) {
	addr, counts, _, _ := limitedServer(t, 3)
	var idle []*keepAlive
	for range 3 {
		k := dial(t, addr)
		if body, err := k.get(t, "/ok"); err != nil || body != "ok" {
			t.Fatalf("request: %q %v", body, err)
		}
		idle = append(idle, k)
		// Wait for the server to count it idle, so that the order in which
		// they went idle is the order they were opened.
		waitFor(t, func() bool { counts.mu.Lock(); defer counts.mu.Unlock(); return counts.idle == len(idle) })
	}
	// A fourth client is served, and the connection idle longest makes room.
	fresh := dial(t, addr)
	if body, err := fresh.get(t, "/ok"); err != nil || body != "ok" {
		t.Fatalf("a new client at the cap: %q %v", body, err)
	}
	if !idle[0].closedByServer() {
		t.Error("the oldest idle connection is still open")
	}
	// The others still work.
	for i, k := range idle[1:] {
		if body, err := k.get(t, "/ok"); err != nil || body != "ok" {
			t.Errorf("idle connection %d: %q %v", i+1, body, err)
		}
	}
	if _, maxOpen, refused, evicted := counts.get(); maxOpen > 3 || refused != 0 || evicted != 1 {
		t.Errorf("max open %d, refused %d, evicted %d; want at most 3, 0, 1", maxOpen, refused, evicted)
	}
}

func TestConnectionCapClosesSilentConnectionsForRealClients(t *testing.T) {
	addr, counts, _, _ := limitedServer(t, 4)
	// Many connections that never send a request (or keep-alive sockets
	// left idle), far more than the cap, as a client without a key might
	// open them.
	var silent []*keepAlive
	for range 50 {
		silent = append(silent, dial(t, addr))
	}
	// A real client is still served at once.
	for range 3 {
		k := dial(t, addr)
		if body, err := k.get(t, "/ok"); err != nil || body != "ok" {
			t.Fatalf("a real client among silent connections: %q %v", body, err)
		}
	}
	open, maxOpen, refused, _ := counts.get()
	if maxOpen > 4 || open > 4 {
		t.Errorf("open %d, at most %d: the cap is 4", open, maxOpen)
	}
	if refused != 0 {
		t.Errorf("refused %d: silent connections should have made room", refused)
	}
	// The earliest silent connections were closed to make room.
	if !silent[0].closedByServer() {
		t.Error("the first silent connection is still open")
	}
}

func TestConnectionCapRefusesOnlyWhenEveryConnectionIsBusy(t *testing.T) {
	addr, counts, release, blocked := limitedServer(t, 2)
	var busy []*keepAlive
	for range 2 {
		k := dial(t, addr)
		k.send(t, "/block")
		busy = append(busy, k)
		<-blocked
	}
	// Both connections serve a request: the new one is closed at once, with
	// no answer, rather than left waiting.
	extra := dial(t, addr)
	start := time.Now()
	if _, err := extra.get(t, "/ok"); err == nil {
		t.Fatal("a connection over the cap was served while every other was busy")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if _, _, refused, evicted := counts.get(); refused != 1 || evicted != 0 {
		t.Errorf("refused %d, evicted %d; want 1, 0", refused, evicted)
	}
	// The requests in progress were not cut.
	close(release)
	for i, k := range busy {
		if body, err := k.read(); err != nil || body != "done" {
			t.Errorf("busy request %d: %q %v", i, body, err)
		}
	}
	// Once they are done, a new client gets in again.
	k := dial(t, addr)
	if body, err := k.get(t, "/ok"); err != nil || body != "ok" {
		t.Errorf("after the busy requests: %q %v", body, err)
	}
}

func TestMaxConnsRule(t *testing.T) {
	for _, tc := range []struct {
		nofile   uint64
		sessions int
		want     int
	}{
		{1 << 20, 0, 1024},
		{1 << 20, 10000, 1024},
		{^uint64(0), 100, 1024},
		{4096, 0, 1024},                      // (4096-256)/2 = 1920, capped
		{4096, 500, (4096 - 256 - 2000) / 2}, // 920
		{1024, 0, (1024 - 256) / 2},          // 384
		{1024, 100, (1024 - 256 - 400) / 2},  // 184
		{1024, 1000, 64},                     // not enough for the sessions: the floor
		{256, 0, 64},
	} {
		if got := api.MaxConns(tc.nofile, tc.sessions); got != tc.want {
			t.Errorf("MaxConns(%d, %d) = %d, want %d", tc.nofile, tc.sessions, got, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

func TestServerErrorsGoToTheLog(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	srv := api.NewServer(mux, log, nil)
	k := dial(t, serve(t, srv, nil))
	if _, err := k.get(t, "/panic"); err == nil {
		t.Fatal("a panicking handler answered")
	}
	waitFor(t, func() bool { return strings.Contains(buf.String(), "panic serving") })
	if s := buf.String(); !strings.Contains(s, `"level":"WARN"`) || !strings.Contains(s, `"component":"http"`) {
		t.Errorf("net/http's error is not a slog line: %s", s)
	}
}
