package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// streamObserver counts what the hub reports.
type streamObserver struct {
	mu               sync.Mutex
	clients, dropped int
}

func (o *streamObserver) StreamClients(n int) { o.mu.Lock(); o.clients = n; o.mu.Unlock() }
func (o *streamObserver) StreamDropped()      { o.mu.Lock(); o.dropped++; o.mu.Unlock() }
func (o *streamObserver) get() (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.clients, o.dropped
}

// streamServer serves the API with a hub behind api.NewServer (the
// production server, its timeouts shortened to readTimeout when set), and
// closes the hub as the server shuts down, as the service does.
func streamServer(t *testing.T, opts events.Options, heartbeat, timeouts time.Duration) (*httptest.Server, *events.Hub) {
	t.Helper()
	if opts.FirstSeq == 0 {
		opts.FirstSeq = 1
	}
	hub := events.New(opts)
	h := api.NewHandler(api.Options{Sessions: fakeSessions{}, APIKey: testKey, Events: hub, Heartbeat: heartbeat})
	srv := httptest.NewUnstartedServer(h)
	srv.Config = api.NewServer(h, nil, nil)
	if timeouts > 0 {
		srv.Config.ReadTimeout, srv.Config.WriteTimeout = timeouts, timeouts
	}
	srv.Config.RegisterOnShutdown(hub.Close)
	srv.Start()
	t.Cleanup(func() { hub.Close(); srv.Close() })
	return srv, hub
}

// stream is an open event stream read line by line.
type stream struct {
	resp *http.Response
	r    *bufio.Reader
}

// openStream GETs path with the key and lastID, within ctx.
func openStream(t *testing.T, ctx context.Context, srv *httptest.Server, path, lastID string) *stream {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return &stream{resp: resp, r: bufio.NewReader(resp.Body)}
}

// block reads up to the next blank line and returns what came before it.
func (s *stream) block(t *testing.T) string {
	t.Helper()
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("read the stream after %q: %v", lines, err)
		}
		if line == "\n" {
			return strings.Join(lines, "\n")
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
}

// event is the next block that is not a comment.
func (s *stream) event(t *testing.T) string {
	t.Helper()
	for {
		if b := s.block(t); !strings.HasPrefix(b, ":") {
			return b
		}
	}
}

func stateEvent(id string, n int) sessions.Event {
	return sessions.Event{Type: sessions.EventSessionState, ID: fmt.Sprintf("st_%s_%d", id, n), SenderID: id,
		Data: json.RawMessage(fmt.Sprintf(`{"senderId":%q,"n":%d}`, id, n))}
}

// The wire contract: headers, one event per block with its id, type and
// one line of data, the senderId filter, Last-Event-ID replay and reset.
func TestEventStreamWire(t *testing.T) {
	srv, hub := streamServer(t, events.Options{Size: 4}, time.Hour, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	all := openStream(t, ctx, srv, "/api/whatsapp/events", "")
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := all.resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	onlyB := openStream(t, ctx, srv, "/api/whatsapp/events?senderId=b&senderId=c", "")
	hub.Add(stateEvent("a", 1), stateEvent("b", 1))
	hub.Add(sessions.Event{Type: sessions.EventMessageReceived, ID: "msg_1", SenderID: "b", Data: json.RawMessage(`{"text":"hi"}`)})
	for _, want := range []string{
		"id: 1\nevent: session.state\ndata: {\"senderId\":\"a\",\"n\":1}",
		"id: 2\nevent: session.state\ndata: {\"senderId\":\"b\",\"n\":1}",
		"id: 3\nevent: message.received\ndata: {\"type\":\"message.received\",\"id\":\"msg_1\",\"timestamp\":\"0001-01-01T00:00:00Z\",\"senderId\":\"b\",\"data\":{\"text\":\"hi\"}}",
	} {
		if got := all.event(t); got != want {
			t.Errorf("all:\n%s\nwant\n%s", got, want)
		}
	}
	for _, want := range []string{"id: 2\n", "id: 3\n"} {
		if got := onlyB.event(t); !strings.HasPrefix(got, want) {
			t.Errorf("senderId=b: %q, want %q...", got, want)
		}
	}

	// Replay after 1: 2 and 3, then live.
	again := openStream(t, ctx, srv, "/api/whatsapp/events", "1")
	hub.Add(stateEvent("a", 2))
	for _, want := range []string{"id: 2\n", "id: 3\n", "id: 4\n"} {
		if got := again.event(t); !strings.HasPrefix(got, want) {
			t.Errorf("replay from 1: %q, want %q...", got, want)
		}
	}
	// The ring (4) lost 1 once 5 and 6 come: 0 is not covered any more; a
	// number from the future (another run) is not either.
	hub.Add(stateEvent("a", 3), stateEvent("a", 4))
	for i, last := range []string{"1", "99", "x"} {
		s := openStream(t, ctx, srv, "/api/whatsapp/events", last)
		if got, want := s.event(t), fmt.Sprintf("id: %d\nevent: reset\ndata: {}", 6+i); got != want {
			t.Errorf("Last-Event-ID %s: %q, want %q (the newest id)", last, got, want)
		}
		hub.Add(stateEvent("a", 10+i))
		if got := s.event(t); !strings.Contains(got, "event: session.state") {
			t.Errorf("after the reset: %q, want live events", got)
		}
	}
}

// Bad requests are refused before the stream starts; without the key, 401.
func TestEventStreamRefusals(t *testing.T) {
	srv, hub := streamServer(t, events.Options{MaxClients: 1}, time.Hour, 0)
	for _, tc := range []struct {
		path, auth string
		status     int
		code       string
	}{
		{"/api/whatsapp/events", "", 401, "unauthorized"},
		{"/api/whatsapp/events", "Bearer wrong-key-0123456789abcdefgh", 401, "unauthorized"},
		{"/api/whatsapp/events?senderId=bad%20id", "Bearer " + testKey, 400, "invalid_id"},
		{"/api/whatsapp/events?senderId=", "Bearer " + testKey, 400, "invalid_id"},
		{"/api/whatsapp/events?senderid=a", "Bearer " + testKey, 400, "bad_request"},
	} {
		resp, body := do(t, srv, http.MethodGet, tc.path, tc.auth, "")
		if resp.StatusCode != tc.status || errorCode(body) != tc.code {
			t.Errorf("%s (%q): %d %v, want %d %s", tc.path, tc.auth, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	if resp, _ := do(t, srv, http.MethodPost, "/api/whatsapp/events", "Bearer "+testKey, ""); resp.StatusCode != 405 {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	openStream(t, ctx, srv, "/api/whatsapp/events", "")
	if resp, body := do(t, srv, http.MethodGet, "/api/whatsapp/events", "Bearer "+testKey, ""); resp.StatusCode != 503 || errorCode(body) != "too_many_streams" {
		t.Errorf("over MaxClients: %d %v", resp.StatusCode, body)
	}
	hub.Close()
	if resp, body := do(t, srv, http.MethodGet, "/api/whatsapp/events", "Bearer "+testKey, ""); resp.StatusCode != 503 || errorCode(body) != "shutting_down" {
		t.Errorf("after Close: %d %v", resp.StatusCode, body)
	}
}

// An idle stream gets heartbeats and outlives the server's read and write
// timeouts (the production server's are 15 s and 30 s).
func TestEventStreamHeartbeatOutlivesServerTimeouts(t *testing.T) {
	srv, hub := streamServer(t, events.Options{}, 50*time.Millisecond, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, srv, "/api/whatsapp/events", "")
	start := time.Now()
	pings := 0
	for time.Since(start) < time.Second { // three times the timeouts
		if b := s.block(t); b != ": ping" {
			t.Fatalf("idle stream: %q, want a ping", b)
		}
		pings++
	}
	if pings < 5 {
		t.Errorf("%d pings in a second at 50 ms", pings)
	}
	hub.Add(stateEvent("a", 1))
	if got := s.event(t); !strings.HasPrefix(got, "id: 1\n") {
		t.Errorf("after a second: %q", got)
	}
}

// A client that stops reading is cut off once its buffer is full, counted,
// and its stream ends; the hub (the actors' side) never waits, and other
// clients get everything.
func TestEventStreamSlowClientIsDisconnected(t *testing.T) {
	noLeaks(t)
	obs := &streamObserver{}
	srv, hub := streamServer(t, events.Options{MaxLag: 4, Observer: obs, Size: 16}, time.Hour, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The slow client: a raw connection that sends the request and does
	// not read, so the socket buffers fill, then the handler's write
	// blocks, then the hub's buffer for it.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/whatsapp/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", testKey)
	waitFor(t, func() bool { c, _ := obs.get(); return c == 1 })
	fast := openStream(t, ctx, srv, "/api/whatsapp/events", "")

	// The fast client reads each event before the next is added.
	big := json.RawMessage(`{"pad":"` + strings.Repeat("x", 256<<10) + `"}`)
	for i := range 400 { // 100 MiB: more than any socket buffers hold
		hub.Add(sessions.Event{Type: sessions.EventSessionState, ID: fmt.Sprint("st_", i), SenderID: "a", Data: big})
		if got := fast.event(t); !strings.HasPrefix(got, fmt.Sprintf("id: %d\n", i+1)) {
			t.Fatalf("fast client: %.20q, want event %d", got, i+1)
		}
		if _, dropped := obs.get(); dropped > 0 {
			break
		}
	}
	if _, dropped := obs.get(); dropped != 1 {
		t.Fatalf("dropped %d, want 1 (the slow client)", dropped)
	}
	// Reading now, the slow client gets what was in flight, then the end.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the slow client's answer: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("the slow client's stream did not end: %v", err)
	}
	waitFor(t, func() bool { c, _ := obs.get(); return c == 1 })
}

// Shutting the server down ends open streams at once instead of waiting
// for them.
func TestEventStreamEndsOnShutdown(t *testing.T) {
	noLeaks(t)
	srv, _ := streamServer(t, events.Options{}, time.Hour, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, srv, "/api/whatsapp/events", "")
	start := time.Now()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("shutdown took %s", took)
	}
	if b, err := io.ReadAll(s.r); err != nil || len(b) != 0 {
		t.Errorf("after shutdown: %q, %v; want the end of the stream", b, err)
	}
}

// noLeaks checks, after the test's other cleanups (the server's close),
// that no goroutine it started is left: the streams' handlers ended.
func noLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// flushCounter is a ResponseWriter that counts flushes; safe to read
// while the handler writes.
type flushCounter struct {
	mu      sync.Mutex
	header  http.Header
	body    strings.Builder
	flushes int
}

func (f *flushCounter) Header() http.Header { return f.header }
func (f *flushCounter) WriteHeader(int)     {}
func (f *flushCounter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body.Write(p)
}
func (f *flushCounter) Flush() { f.mu.Lock(); f.flushes++; f.mu.Unlock() }
func (f *flushCounter) get() (events, flushes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Count(f.body.String(), "\nevent: "), f.flushes
}

// A burst of events goes out in flushes at least 20 ms apart, not one
// flush per event.
func TestEventStreamPacesFlushes(t *testing.T) {
	hub := events.New(events.Options{FirstSeq: 1})
	defer hub.Close()
	h := api.NewHandler(api.Options{Sessions: fakeSessions{}, APIKey: testKey, Events: hub, Heartbeat: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/whatsapp/events", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	w := &flushCounter{header: http.Header{}}
	done := make(chan struct{})
	go func() { defer close(done); h.ServeHTTP(w, req) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return hub.Clients() == 1 })

	const n = 1000
	start := time.Now()
	for i := range n {
		hub.Add(stateEvent("a", i))
	}
	waitFor(t, func() bool { got, _ := w.get(); return got == n })
	elapsed := time.Since(start)
	_, flushes := w.get()
	// One for the headers, then at most one per 20 ms, and one more for
	// the last partial window.
	if most := 2 + int(elapsed/(20*time.Millisecond)) + 1; flushes > most {
		t.Errorf("%d flushes for %d events in %v, want at most %d", flushes, n, elapsed, most)
	}
	t.Logf("%d events in %d flushes, %v", n, flushes, elapsed)
}
