package fakeserver_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	waLog "go.mau.fi/whatsmeow/util/log"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// waitTimeout bounds every wait on a client event or server state.
const waitTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	fakeserver.UseTestRootKey()
	// Short keepalive intervals make every test exercise keepalive answers
	// and let the keepalive test finish in seconds. These are whatsmeow
	// package variables: set once here, before any client runs.
	whatsmeow.KeepAliveIntervalMin = 200 * time.Millisecond
	whatsmeow.KeepAliveIntervalMax = 400 * time.Millisecond
	whatsmeow.KeepAliveResponseDeadline = 500 * time.Millisecond
	goleak.VerifyTestMain(m)
}

// debugClients makes whatsmeow log to stdout (FAKESERVER_DEBUG=1).
var debugClients = os.Getenv("FAKESERVER_DEBUG") != ""

func startServer(t testing.TB) *fakeserver.Server {
	t.Helper()
	srv, err := fakeserver.Start(fakeserver.Options{})
	if err != nil {
		t.Fatalf("start fake server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close fake server: %v", err)
		}
	})
	return srv
}

// openStore opens (creating) a whatsmeow sqlstore file as the service does.
func openStore(t testing.TB, path string) *sqlstore.Container {
	t.Helper()
	container, err := sqlstore.New(context.Background(), "sqlite", dsn(path), nil)
	if err != nil {
		t.Fatalf("open store %s: %v", path, err)
	}
	t.Cleanup(func() { _ = container.Close() })
	return container
}

// dsn is the service's connection string for a store file.
func dsn(path string) string {
	return "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate"
}

func storePath(t testing.TB, name string) string {
	return filepath.Join(t.TempDir(), name+".db")
}

// seed opens a new store file holding a seeded device for user.
func seed(t testing.TB, user string) (*sqlstore.Container, *store.Device) {
	t.Helper()
	container := openStore(t, storePath(t, user))
	dev, err := fakeserver.SeedDevice(context.Background(), container, user)
	if err != nil {
		t.Fatalf("seed %s: %v", user, err)
	}
	return container, dev
}

// emptyStore creates a store file with whatsmeow's schema and no device.
// Copying it is much cheaper than creating the schema again: under -race,
// SQLite's statement parsing makes sqlstore.New cost about 40 ms.
func emptyStore(t testing.TB) []byte {
	t.Helper()
	path := storePath(t, "empty")
	container, err := sqlstore.New(context.Background(), "sqlite", dsn(path), nil)
	if err != nil {
		t.Fatalf("create store: %v", err)
	}
	// Closing checkpoints the WAL, so the main file holds everything.
	if err := container.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// seedStore is seed for use from other goroutines than the test's, on a
// copy of an empty store file: it returns errors instead of failing the
// test.
func seedStore(t testing.TB, empty []byte, user string) (*store.Device, error) {
	path := storePath(t, user)
	if err := os.WriteFile(path, empty, 0o600); err != nil {
		return nil, err
	}
	container, err := sqlstore.New(context.Background(), "sqlite", dsn(path), nil)
	if err != nil {
		return nil, fmt.Errorf("open store for %s: %w", user, err)
	}
	t.Cleanup(func() { _ = container.Close() })
	dev, err := fakeserver.SeedDevice(context.Background(), container, user)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", user, err)
	}
	return dev, nil
}

// firstDevice loads the device of a store file, as a restarted service does.
func firstDevice(t testing.TB, container *sqlstore.Container) *store.Device {
	t.Helper()
	dev, err := container.GetFirstDevice(context.Background())
	if err != nil {
		t.Fatalf("load device: %v", err)
	}
	return dev
}

// testClient is a real whatsmeow client pointed at a fake server, recording
// every event it emits.
type testClient struct {
	*whatsmeow.Client

	mu     sync.Mutex
	events []any
	cond   chan struct{} // closed and replaced whenever an event arrives
}

func newClient(t testing.TB, srv *fakeserver.Server, dev *store.Device) *testClient {
	t.Helper()
	var log waLog.Logger = waLog.Noop
	if debugClients {
		log = waLog.Stdout(t.Name(), "DEBUG", false)
	}
	tc := &testClient{Client: whatsmeow.NewClient(dev, log), cond: make(chan struct{})}
	hc, err := fakeserver.HTTPClient(srv.Addr(), srv.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	tc.SetWebsocketHTTPClient(hc)
	tc.SetPreLoginHTTPClient(hc)
	tc.EnableAutoReconnect = false
	tc.AddEventHandler(tc.record)
	t.Cleanup(tc.Disconnect)
	return tc
}

func (tc *testClient) record(evt any) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.events = append(tc.events, evt)
	close(tc.cond)
	tc.cond = make(chan struct{})
}

// seen returns the events recorded so far.
func (tc *testClient) seen() []any {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.events
}

// reset forgets the events recorded so far, so that waitEvent sees only
// later ones.
func (tc *testClient) reset() {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.events = nil
}

// waitEvent waits until the client has emitted an event of type T
// satisfying match (nil matches any) and returns the first such event.
func waitEvent[T any](t testing.TB, tc *testClient, match func(T) bool) T {
	t.Helper()
	deadline := time.After(waitTimeout)
	seen := 0
	for {
		tc.mu.Lock()
		events, cond := tc.events, tc.cond
		tc.mu.Unlock()
		for _, evt := range events[seen:] {
			if typed, ok := evt.(T); ok && (match == nil || match(typed)) {
				return typed
			}
		}
		seen = len(events)
		select {
		case <-cond:
		case <-deadline:
			var zero T
			t.Fatalf("no %T event within %s; got %s", zero, waitTimeout, describe(events))
			return zero
		}
	}
}

func describe(events []any) string {
	out := "["
	for i, evt := range events {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%T", evt)
	}
	return out + "]"
}

// eventually polls cond until it holds or the wait times out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	e2e.WaitFor(t, waitTimeout, what, func() (bool, string) { return cond(), "" })
}

// waitConnections polls the server's live connection count of user until it is
// want.
func waitConnections(t testing.TB, ctl fakeserver.Control, user string, want int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d connections of %s", want, user), func() bool {
		n, err := ctl.Connections(context.Background(), user)
		if err != nil {
			t.Fatalf("connections: %v", err)
		}
		return n == want
	})
}

// pairingClient connects a client on a new, empty store file at path and
// returns its QR channel with the first code it shows.
func pairingClient(t testing.TB, srv *fakeserver.Server, path string) (*testClient, <-chan whatsmeow.QRChannelItem, whatsmeow.QRChannelItem) {
	t.Helper()
	tc := newClient(t, srv, firstDevice(t, openStore(t, path)))
	qrs, err := tc.GetQRChannel(ctxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	connect(t, tc)
	first := <-qrs
	if first.Event != whatsmeow.QRChannelEventCode {
		t.Fatalf("first QR channel item %+v, want a code", first)
	}
	return tc, qrs, first
}

// checkQREnd reads the rest of a QR channel's codes and checks that it
// ends with want.
func checkQREnd(t testing.TB, qrs <-chan whatsmeow.QRChannelItem, want whatsmeow.QRChannelItem) {
	t.Helper()
	for item := range qrs {
		if item.Event != whatsmeow.QRChannelEventCode {
			if item != want {
				t.Errorf("QR channel ended with %+v, want %+v", item, want)
			}
			return
		}
	}
	t.Errorf("QR channel closed without an end, want %+v", want)
}

func connect(t testing.TB, tc *testClient) {
	t.Helper()
	if err := tc.Connect(); err != nil {
		t.Fatalf("connect: %v", err)
	}
}

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
