package faults_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// fake is the fake WhatsApp server, in the test process, that every run of
// the service in a test talks to: it outlives the service's restarts, as
// WhatsApp does, and its sockets tell what the service really did.
type fake struct {
	*e2e.Fake
	sockets *socketTracker
}

func newFake(t *testing.T) *fake {
	t.Helper()
	tr := newSocketTracker()
	return &fake{Fake: e2e.NewFake(t, fakeserver.Options{Log: slog.New(trackHandler{tr: tr})}), sockets: tr}
}

func (f *fake) stats(t *testing.T) fakeserver.Stats {
	t.Helper()
	st, err := f.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitQuiet waits until the server has seen every logged-in socket close:
// after a kill -9 the kernel closes them at once, but the server reads the
// close a moment later. A restart before that would be racing the server,
// not the service.
func (f *fake) waitQuiet(t *testing.T) {
	t.Helper()
	e2e.WaitFor(t, 10*time.Second, "the fake server to see every socket closed", func() (bool, string) {
		st := f.stats(t)
		open := f.sockets.open()
		return st.Live == 0 && open == 0, sprint("live", st.Live, "open sockets", open)
	})
}

// socketTracker counts, per device, the sockets that logged in and are not
// closed yet, and remembers the highest such count; it also keeps the time
// of every successful login.
//
// Why not a fakeserver.PeakConnections: the fake keeps one live connection
// per device by construction (a second login takes the first one out of
// its live set and sends it <conflict type="replaced"/>), so Connections
// never shows two and a peak of it would always be one; counting the
// replacements would need a hook in login.go. What the fake does log, at
// debug level, is every successful login ("logged in", with its conn id,
// user and device) and the end of every logged-in socket ("connection
// ended" or "bad frame from client", same conn id): a socket counts from
// its login until it closes. That catches a second client whose socket is
// still open when the first one's login is logged, but not one the fake
// replaced so fast that the replaced client closed before the new login
// was logged: see assertNoDoubleLogin for the whole check.
type socketTracker struct {
	mu     sync.Mutex
	byConn map[uint64]string // open logged-in socket -> device
	perDev map[string]int    // device -> open logged-in sockets
	peak   map[string]int    // device -> highest open count seen
	logins moments           // time of every successful login
}

func newSocketTracker() *socketTracker {
	return &socketTracker{byConn: map[uint64]string{}, perDev: map[string]int{}, peak: map[string]int{}}
}

func (s *socketTracker) loggedIn(conn uint64, device string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byConn[conn] = device
	s.perDev[device]++
	s.peak[device] = max(s.peak[device], s.perDev[device])
	s.logins.add(at)
}

func (s *socketTracker) ended(conn uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	device, ok := s.byConn[conn]
	if !ok {
		return
	}
	delete(s.byConn, conn)
	s.perDev[device]--
}

// open is the number of logged-in sockets not closed yet.
func (s *socketTracker) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byConn)
}

// overlapping lists the devices that ever had two logged-in sockets at once,
// with their peak.
func (s *socketTracker) overlapping() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for d, p := range s.peak {
		if p > 1 {
			out[d] = p
		}
	}
	return out
}

// trackHandler is the fake server's slog handler: it feeds its connection
// records to a socketTracker and drops everything else.
type trackHandler struct {
	tr      *socketTracker
	conn    uint64
	hasConn bool
}

func (trackHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h trackHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	for _, a := range attrs {
		if a.Key == "conn" {
			if id, ok := uintValue(a.Value); ok {
				h.conn, h.hasConn = id, true
			}
		}
	}
	return h
}

func (h trackHandler) WithGroup(string) slog.Handler { return h }

func (h trackHandler) Handle(_ context.Context, r slog.Record) error {
	if !h.hasConn {
		return nil
	}
	switch r.Message {
	case "logged in":
		var user, device string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "user":
				user = a.Value.String()
			case "device":
				device = a.Value.String()
			}
			return true
		})
		h.tr.loggedIn(h.conn, user+":"+device, r.Time)
	case "connection ended", "bad frame from client":
		h.tr.ended(h.conn)
	}
	return nil
}

func uintValue(v slog.Value) (uint64, bool) {
	switch v.Kind() {
	case slog.KindUint64:
		return v.Uint64(), true
	case slog.KindInt64:
		return uint64(v.Int64()), true
	}
	return 0, false
}

// assertNoDoubleLogin checks that no device was ever logged in by two
// clients at the same moment, during the service runs whose logs are
// given: no two logged-in sockets of one device were open at once on the
// fake server (socketTracker), and the fake never had to replace a login,
// which its replaced client logs ("Got replaced stream error": whatsmeow's
// info, the service's debug, so the runs need LOG_LEVEL=debug) even when
// the client is one its session no longer holds, and a current one ends
// in conflict ("session state" to conflict).
func assertNoDoubleLogin(t errorReporter, f *fake, logs ...*e2e.Logs) {
	t.Helper()
	if o := f.sockets.overlapping(); len(o) > 0 {
		t.Errorf("devices with two logged-in sockets at the same moment (device: peak): %v", o)
	}
	for i, l := range logs {
		for _, rec := range l.Records() {
			if rec["msg"] == "Got replaced stream error, sending StreamReplaced event" ||
				(rec["msg"] == "session state" && rec["to"] == "conflict") {
				t.Errorf("run %d: a second login replaced session %v: %v", i+1, rec["session_id"], rec)
			}
		}
	}
}

// errorReporter is the part of *testing.T an assertion reports through.
type errorReporter interface {
	Helper()
	Errorf(format string, args ...any)
}
