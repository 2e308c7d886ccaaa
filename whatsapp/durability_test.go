package whatsapp_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// eventWait bounds every wait for a client event.
const eventWait = 30 * time.Second

// durableSession is a session paired through a real whatsmeow client (the
// StoreOpener's) with a fake server. Its store's connection never idles
// out: closing it checkpoints the WAL, which would make the database file
// whole whether or not the client synced it.
type durableSession struct {
	srv    *fakeserver.Server
	dir    *store.Dir
	opener *whatsapp.StoreOpener
	client whatsapp.Client
	events chan whatsapp.Event

	mu sync.Mutex
	// atEvent is the device each copy of whatsapp.db without its -wal file
	// held, taken as the client emitted PairSuccess and LoggedOut (before
	// anything else could checkpoint the store).
	atEvent map[string]string
}

const durableID = "durable"

func pairDurable(t *testing.T) (*durableSession, string) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	fakeserver.UseTestRootKey()
	srv, err := fakeserver.Start(fakeserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close fake server: %v", err)
		}
	})
	hc, err := fakeserver.HTTPClient(srv.Addr(), srv.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := store.OpenDir(filepath.Join(t.TempDir(), "sessions"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	ds := &durableSession{srv: srv, dir: dir, events: make(chan whatsapp.Event, 256), atEvent: map[string]string{}}
	ds.opener = whatsapp.NewStoreOpener(dir, whatsapp.Options{HTTPClient: hc, StoreIdleTimeout: time.Hour,
		Sink: whatsapp.DiscardEvents{}})
	ctx := context.Background()
	cli := ds.open(t, true)
	if err := cli.StartPairing(ctx); err != nil {
		t.Fatal(err)
	}
	qr := waitFor[whatsapp.QRCode](t, ds)
	jid, err := srv.ScanQR(ctx, qr.Code)
	if err != nil {
		t.Fatalf("ScanQR: %v", err)
	}
	if got := waitFor[whatsapp.PairSuccess](t, ds); got.JID != jid {
		t.Fatalf("PairSuccess for %s, the server paired %s", got.JID, jid)
	}
	return ds, jid
}

// open opens the session's client.
func (ds *durableSession) open(t *testing.T, create bool) whatsapp.Client {
	t.Helper()
	cli, err := ds.opener.Open(context.Background(), durableID, create, ds.emit(t))
	if err != nil {
		t.Fatal(err)
	}
	ds.client = cli
	t.Cleanup(func() { cli.Close() })
	return cli
}

// restart closes the paired session's client once it logged in and
// connects a new one from the store, as a restarted service does. Its
// login is over when the client reports it: unlike the login after the
// pairing, it syncs no app state, whose goroutines would race with a
// logout's deletion in whatsmeow.
func (ds *durableSession) restart(t *testing.T) {
	t.Helper()
	waitFor[whatsapp.Connected](t, ds)
	if err := ds.client.Close(); err != nil {
		t.Fatal(err)
	}
	cli := ds.open(t, false)
	if err := cli.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor[whatsapp.Connected](t, ds)
}

// emit records the client's events; at PairSuccess and LoggedOut it copies
// the store's database file first.
func (ds *durableSession) emit(t *testing.T) func(whatsapp.Event) {
	return func(e whatsapp.Event) {
		switch e.(type) {
		case whatsapp.PairSuccess:
			ds.copyAt(t, "PairSuccess")
		case whatsapp.LoggedOut:
			ds.copyAt(t, "LoggedOut")
		}
		select {
		case ds.events <- e:
		default:
			t.Errorf("event %T dropped: the test's buffer is full", e)
		}
	}
}

func (ds *durableSession) copyAt(t *testing.T, name string) {
	jid, err := deviceWithoutWAL(t, ds.dir)
	if err != nil {
		t.Errorf("at %s: %v", name, err)
		return
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.atEvent[name] = jid
}

func (ds *durableSession) copied(t *testing.T, name string) string {
	t.Helper()
	ds.mu.Lock()
	defer ds.mu.Unlock()
	jid, ok := ds.atEvent[name]
	if !ok {
		t.Fatalf("no copy taken at %s", name)
	}
	return jid
}

// deviceWithoutWAL opens a copy of the session's whatsapp.db without its
// -wal file, the least a power loss can leave of a store at
// synchronous(NORMAL), with whatsmeow's sqlstore, and returns the JID of
// the device it holds, "" for none.
func deviceWithoutWAL(t *testing.T, dir *store.Dir) (string, error) {
	path, err := dir.SessionPath(durableID)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(path, "whatsapp.db"))
	if err != nil {
		return "", err
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		return "", err
	}
	ctx := context.Background()
	c, err := sqlstore.New(ctx, store.DriverName, store.DSN(cp), nil)
	if err != nil {
		return "", err
	}
	defer c.Close()
	dev, err := c.GetFirstDevice(ctx)
	if err != nil || dev.ID == nil {
		return "", err
	}
	return dev.ID.String(), nil
}

// waitFor returns the next event of type T the client emits, skipping
// others.
func waitFor[T whatsapp.Event](t *testing.T, ds *durableSession) T {
	t.Helper()
	deadline := time.After(eventWait)
	for {
		select {
		case e := <-ds.events:
			if typed, ok := e.(T); ok {
				return typed
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T event within %s", zero, eventWait)
			return zero
		}
	}
}

// A newly paired device is in the database file itself when the client
// reports the pairing, and a logout's deletion when Logout returns: a power
// loss then keeps both.
func TestPairingAndLogoutSurviveAPowerLoss(t *testing.T) {
	ds, jid := pairDurable(t)
	if got := ds.copied(t, "PairSuccess"); got != jid {
		t.Fatalf("at PairSuccess the database file alone holds device %q, want %q", got, jid)
	}
	ds.restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	if err := ds.client.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	got, err := deviceWithoutWAL(t, ds.dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != "" {
		t.Fatalf("after Logout the database file alone still holds device %q", got)
	}
}

// A device WhatsApp unlinked is gone from the database file itself when
// the client reports the logout.
func TestUnlinkSurvivesAPowerLoss(t *testing.T) {
	ds, jid := pairDurable(t)
	ds.restart(t)
	parsed, err := types.ParseJID(jid)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.srv.Unlink(context.Background(), parsed.User, parsed.Device); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	waitFor[whatsapp.LoggedOut](t, ds)
	if got := ds.copied(t, "LoggedOut"); got != "" {
		t.Fatalf("at LoggedOut the database file alone still holds device %q", got)
	}
}
