package whatsapp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCompanionReg"
	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Errors of the Client's operations.
var (
	// ErrNotPaired means the operation needs a paired device.
	ErrNotPaired = errors.New("no paired device")
	// ErrNotConnected means the operation needs a live connection.
	ErrNotConnected = errors.New("not connected to WhatsApp")
	// ErrUnlinkedNotDeleted means a logout unlinked the device on
	// WhatsApp but could not delete its credentials from the store.
	ErrUnlinkedNotDeleted = errors.New("unlinked on WhatsApp, but the credentials could not be deleted")
)

// Client is what a session actor drives: one WhatsApp login over one store.
// Every method may block on the network and is called off the actor's
// goroutine; events arrive through the function given to Opener.Open.
type Client interface {
	// Paired reports whether the store holds a paired device.
	Paired() bool
	// Connect dials and logs in a paired device. It returns when the
	// handshake ends; the login's outcome arrives as an event.
	Connect(ctx context.Context) error
	// StartPairing connects an unpaired device and emits QRCode events
	// until a PairingEnded.
	StartPairing(ctx context.Context) error
	// PairPhone asks for a pairing code for phone (international digits),
	// once StartPairing has shown its first code.
	PairPhone(ctx context.Context, phone string) (string, error)
	// Logout unlinks the device on WhatsApp and deletes its credentials.
	Logout(ctx context.Context) error
	// Disconnect closes the socket and emits no event.
	Disconnect()
	// Close disconnects and closes the store. It is safe to call twice.
	Close() error
}

// Opener makes a Client for a session from its store. With create, a
// session that does not exist yet gets a directory and an empty store.
type Opener interface {
	Open(ctx context.Context, id string, create bool, emit func(Event)) (Client, error)
}

// Options configure the whatsmeow clients an Opener makes.
type Options struct {
	// Log is the parent of every client's logger.
	Log *slog.Logger
	// HTTPClient dials WhatsApp's websocket; nil means the real WhatsApp.
	// Test mode gives one that dials the local fake server.
	HTTPClient *http.Client
	// StoreIdleTimeout closes a store's idle database connection.
	StoreIdleTimeout time.Duration
}

// StoreOpener opens sessions from a sessions directory as whatsmeow clients.
type StoreOpener struct {
	dir  *store.Dir
	opts Options
	http *http.Client
}

var _ Opener = (*StoreOpener)(nil)

// NewStoreOpener returns an Opener over dir. Every client shares one HTTP
// client for its websocket, so a thousand sessions do not carry a thousand
// transports.
func NewStoreOpener(dir *store.Dir, opts Options) *StoreOpener {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	hc := opts.HTTPClient
	if hc == nil {
		// whatsmeow's own default (system roots, real DNS), plus a TLS
		// session cache shared by every client: a restore or a mass
		// reconnect resumes TLS sessions instead of verifying the
		// certificate chain on each handshake.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(64)}
		hc = &http.Client{Transport: tr}
	}
	return &StoreOpener{dir: dir, opts: opts, http: hc}
}

// SetDeviceName sets the name the phone shows for linked devices. whatsmeow
// keeps it process-wide, so it is set once, before any client pairs.
func SetDeviceName(name string) {
	wastore.SetOSInfo(name, [3]uint32{1, 0, 0})
	wastore.DeviceProps.PlatformType = waCompanionReg.DeviceProps_DESKTOP.Enum()
}

// Open opens session id's store and wraps it in a whatsmeow client whose
// events go to emit.
func (o *StoreOpener) Open(ctx context.Context, id string, create bool, emit func(Event)) (Client, error) {
	log := o.opts.Log.With("session_id", id)
	sess, err := o.dir.Open(ctx, id, store.OpenOptions{
		Create:      create,
		Log:         Logger(log, "store"),
		IdleTimeout: o.opts.StoreIdleTimeout,
		Watch:       &writeHealth{emit: emit},
	})
	if err != nil {
		return nil, err
	}
	cli := whatsmeow.NewClient(sess.Device, Logger(log, "whatsmeow"))
	// The session actor owns retries (our backoff, our rate limit).
	cli.EnableAutoReconnect = false
	cli.InitialAutoReconnect = false
	cli.SetWebsocketHTTPClient(o.http)
	cli.SetPreLoginHTTPClient(o.http)
	c := &client{cli: cli, sess: sess, emit: emit}
	cli.AddEventHandler(c.handle)
	return c, nil
}

// writeHealth turns a store's write results into events, once per change:
// the first failure, and the first success after failures.
type writeHealth struct {
	emit   func(Event)
	failed atomic.Bool
}

func (w *writeHealth) WriteFailed(err error) {
	if !w.failed.Swap(true) {
		w.emit(StoreWriteFailed{Err: err.Error()})
	}
}

func (w *writeHealth) WriteOK() {
	if w.failed.Load() && w.failed.Swap(false) {
		w.emit(StoreWriteRecovered{})
	}
}

// client adapts a whatsmeow.Client to Client.
type client struct {
	cli  *whatsmeow.Client
	sess *store.Session
	emit func(Event)

	closeOnce sync.Once
	closeErr  error
}

func (c *client) Paired() bool { return c.cli.Store.ID != nil && !c.cli.Store.Deleted }

func (c *client) Connect(ctx context.Context) error {
	if !c.Paired() {
		return ErrNotPaired
	}
	return c.cli.ConnectContext(ctx)
}

func (c *client) StartPairing(ctx context.Context) error {
	if c.Paired() {
		return errors.New("already paired")
	}
	ch, err := c.cli.GetQRChannel(ctx)
	if err != nil {
		return fmt.Errorf("get QR channel: %w", err)
	}
	go c.forwardQR(ch)
	if err := c.cli.ConnectContext(ctx); err != nil {
		return err
	}
	return nil
}

// forwardQR turns the QR channel into events. It ends when whatsmeow closes
// the channel (success, timeout, error), which it always does once the
// client disconnects.
func (c *client) forwardQR(ch <-chan whatsmeow.QRChannelItem) {
	for item := range ch {
		switch {
		case item.Event == whatsmeow.QRChannelEventCode:
			c.emit(QRCode{Code: item.Code, Timeout: item.Timeout})
		case item == whatsmeow.QRChannelSuccess:
			c.emit(PairingEnded{Result: "success"})
		case item == whatsmeow.QRChannelTimeout:
			c.emit(PairingEnded{Result: "timeout"})
		case item.Event == whatsmeow.QRChannelEventError:
			c.emit(PairingEnded{Result: "error", Err: item.Error})
		case item.Event == "passkey-request" || item.Event == "passkey-confirmation":
			// Passkey pairing is not offered; whatsmeow ends the flow itself.
		default:
			c.emit(PairingEnded{Result: "error", Err: fmt.Errorf("pairing ended: %s", item.Event)})
		}
	}
}

func (c *client) PairPhone(ctx context.Context, phone string) (string, error) {
	return c.cli.PairPhone(ctx, phone, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
}

func (c *client) Logout(ctx context.Context) error {
	if !c.Paired() {
		return ErrNotPaired
	}
	if !c.cli.IsConnected() {
		return ErrNotConnected
	}
	err := c.cli.Logout(ctx)
	if err != nil && !c.cli.IsConnected() {
		// whatsmeow disconnects only once WhatsApp has accepted the
		// unlink; what failed after that is deleting the credentials.
		return fmt.Errorf("%w: %v", ErrUnlinkedNotDeleted, err)
	}
	return err
}

func (c *client) Disconnect() { c.cli.Disconnect() }

func (c *client) Close() error {
	c.closeOnce.Do(func() {
		c.cli.Disconnect()
		c.closeErr = c.sess.Close()
	})
	return c.closeErr
}

// handle translates whatsmeow's events into ours. It runs on whatsmeow's
// goroutines under its handler lock: it only forwards.
func (c *client) handle(raw any) {
	switch e := raw.(type) {
	case *events.Connected:
		c.emit(Connected{JID: c.cli.Store.GetJID().String(), PushName: c.cli.Store.PushName})
		// whatsmeow is done with the store for the login: let the
		// connection go now rather than at the idle timeout, so that a
		// restore holds only the stores of sessions still logging in.
		c.sess.Rest()
	case *events.Disconnected:
		c.emit(Disconnected{})
	case *events.LoggedOut:
		c.emit(LoggedOut{Reason: e.Reason.String(), OnConnect: e.OnConnect})
	case *events.StreamReplaced:
		c.emit(StreamReplaced{})
	case *events.TemporaryBan:
		c.emit(TemporaryBan{Reason: e.Code.String(), Expire: e.Expire})
	case *events.ClientOutdated:
		c.emit(ClientOutdated{})
	case *events.ConnectFailure:
		c.emit(ConnectFailure{Reason: int(e.Reason), Message: e.Message})
	case *events.StreamError:
		c.emit(StreamError{Code: e.Code})
	case *events.PairSuccess:
		c.emit(PairSuccess{JID: e.ID.String()})
	case *events.PushNameSetting:
		c.emit(PushNameChanged{Name: e.Action.GetName()})
	case *events.AppStateSyncComplete:
		// A full sync sets the push name without a PushNameSetting event.
		if name := c.cli.Store.PushName; name != "" {
			c.emit(PushNameChanged{Name: name})
		}
	case *events.Message:
		c.emit(MessageReceived{})
	case *events.KeepAliveTimeout:
		c.emit(KeepAliveTimeout{})
	case *events.KeepAliveRestored:
		c.emit(KeepAliveRestored{})
	}
}
