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
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
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
	// JID is the paired device's JID, "" when there is none.
	JID() string
	// Connect dials and logs in a paired device. It returns when the
	// handshake ends; the login's outcome arrives as an event.
	Connect(ctx context.Context) error
	// StartPairing connects an unpaired device and emits QRCode events
	// until a PairingEnded.
	StartPairing(ctx context.Context) error
	// PairPhone asks for a pairing code for phone (international digits),
	// once StartPairing has shown its first code.
	PairPhone(ctx context.Context, phone string) (string, error)
	// Logout unlinks the device on WhatsApp and deletes its credentials,
	// then syncs the store so that the deletion survives a power loss (a
	// failed sync is logged).
	Logout(ctx context.Context) error
	// Send sends a text message to one user and returns once WhatsApp's
	// server acknowledged it: ErrInvalid for a bad recipient or text,
	// sessions.ErrNoRecipient for a number not on WhatsApp,
	// ErrNotConnected without a connection, ErrWhatsApp when refused.
	Send(ctx context.Context, m Outgoing) (sessions.SentMessage, error)
	// MarkRead tells chat's sender that the messages ids were read.
	MarkRead(ctx context.Context, chat string, ids []string) error
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
	// StoreIdleTimeout closes a store's idle database connection (up to
	// twice as late for a store in steady use; see store.OpenOptions).
	StoreIdleTimeout time.Duration
	// Sink keeps the events of incoming messages and receipts; a message
	// is acknowledged to WhatsApp only once its event is committed there.
	// It is required (DiscardEvents keeps nothing, explicitly).
	Sink sessions.EventSink
	// PublishTimeout bounds the wait for the sink; zero means
	// PublishTimeout.
	PublishTimeout time.Duration
}

// Store is one session's open whatsmeow store, as its client uses it:
// SQLiteStores' (a file per session) or PostgresStores' (a device in the
// shared database).
type Store interface {
	// Device is the store's device: the paired one, or a new unsaved one.
	Device() *wastore.Device
	// Paired makes the credentials a pairing just saved durable and
	// findable at the next open.
	Paired(ctx context.Context, jid types.JID) error
	// Forget deletes device jid's credentials (whatsmeow may have deleted
	// them already), durably.
	Forget(ctx context.Context, jid types.JID) error
	// Rest lets the store's idle resources go; the next use takes them
	// again.
	Rest()
	// Close closes the store.
	Close() error
}

// Stores opens sessions' stores. With opts.Create, a session that does not
// exist yet is recorded with an empty store.
type Stores interface {
	Open(ctx context.Context, id string, opts store.OpenOptions) (Store, error)
}

// StoreOpener opens sessions from their stores as whatsmeow clients.
type StoreOpener struct {
	stores Stores
	opts   Options
	http   *http.Client
}

var _ Opener = (*StoreOpener)(nil)

// NewStoreOpener returns an Opener over the sessions directory dir
// (STORE=sqlite).
func NewStoreOpener(dir *store.Dir, opts Options) *StoreOpener {
	return NewOpener(SQLiteStores{Dir: dir}, opts)
}

// NewOpener returns an Opener over stores. Every client shares one HTTP
// client for its websocket, so a thousand sessions do not carry a thousand
// transports. A nil opts.Sink is refused when a client is opened.
func NewOpener(stores Stores, opts Options) *StoreOpener {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = PublishTimeout
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
	return &StoreOpener{stores: stores, opts: opts, http: hc}
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
	if o.opts.Sink == nil {
		return nil, errors.New("whatsapp: Options.Sink is required")
	}
	log := o.opts.Log.With("session_id", id)
	sess, err := o.stores.Open(ctx, id, store.OpenOptions{
		Create:      create,
		Log:         Logger(log, "store"),
		IdleTimeout: o.opts.StoreIdleTimeout,
		Watch:       &writeHealth{emit: emit},
	})
	if err != nil {
		return nil, err
	}
	cli := whatsmeow.NewClient(sess.Device(), Logger(log, "whatsmeow"))
	// The session actor owns retries (our backoff, our rate limit).
	cli.EnableAutoReconnect = false
	cli.InitialAutoReconnect = false
	cli.SetWebsocketHTTPClient(o.http)
	cli.SetPreLoginHTTPClient(o.http)
	// No event lost: whatsmeow acknowledges a message (and sends its
	// delivery receipt) only after the handler reported success, which it
	// does once the sink committed the event; the decrypted plaintext is
	// kept in the store until then, so a message delivered again after a
	// crash decrypts again although its Signal ratchet has moved on.
	cli.SynchronousAck = true
	cli.EnableDecryptedEventBuffer = true
	c := &client{cli: cli, sess: sess, emit: emit, closed: make(chan struct{}), id: id, log: log,
		sink: o.opts.Sink, publishTimeout: o.opts.PublishTimeout, contacts: contacts{lookup: cli.IsOnWhatsApp}, drop: cli.Disconnect}
	if id := sess.Device().ID; id != nil {
		c.jid.Store(ptrTo(*id))
	}
	cli.AddEventHandlerWithSuccessStatus(c.handle)
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
	sess Store
	emit func(Event)
	id   string // the session's
	log  *slog.Logger

	sink           sessions.EventSink
	publishTimeout time.Duration
	contacts       contacts
	// drop ends the connection without an event (whatsmeow's
	// Disconnect); redelivering is set from a drop for an event not
	// committed until the next login.
	drop         func()
	redelivering atomic.Bool

	// jid is the paired device's JID, kept apart from whatsmeow's store,
	// which its own goroutines clear on a logout, so that forget reads it
	// without a race.
	jid atomic.Pointer[types.JID]

	closeOnce sync.Once
	closeErr  error
	// closed ends with Close, and with it what waits on whatsmeow for this
	// client (forwardQR).
	closed chan struct{}
}

// forgetTimeout bounds deleting a logged-out device's credentials.
const forgetTimeout = 30 * time.Second

// syncTimeout bounds making a newly paired device's credentials durable.
const syncTimeout = 30 * time.Second

// forget deletes the device WhatsApp logged out from the store, durably
// (Store.Forget), and reports why it could not delete it. whatsmeow deletes it too, but on the connection's context, which the
// session cancels as soon as it hears of the logout: that delete is often
// lost, and the revoked keys would log in again at the next start.
func (c *client) forget() error {
	jid := c.jid.Load()
	if jid == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
	defer cancel()
	err := c.sess.Forget(ctx, *jid)
	if errors.Is(err, errNotSynced) {
		c.log.Error("logged out device deleted, but", "err", err)
		return nil
	}
	return err
}

func ptrTo[T any](v T) *T { return &v }

func (c *client) Paired() bool { return c.cli.Store.ID != nil && !c.cli.Store.Deleted }

func (c *client) JID() string {
	if jid := c.jid.Load(); jid != nil {
		return jid.String()
	}
	return ""
}

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
// the channel (success, timeout, error, a disconnect by the server), or when
// the client is closed: whatsmeow never closes the channel after a
// disconnect it was asked to make, so without the second way every session
// stopped or deleted while pairing would leave this goroutine, and the
// client and keys it holds, behind.
func (c *client) forwardQR(ch <-chan whatsmeow.QRChannelItem) {
	for {
		var item whatsmeow.QRChannelItem
		select {
		case <-c.closed:
			return
		case it, ok := <-ch:
			if !ok {
				return
			}
			item = it
		}
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
	if err != nil {
		return err
	}
	// whatsmeow deleted the device; Forget makes that durable (and, on
	// Postgres, unrecords the device). A failure is logged, not returned:
	// the unlink happened.
	if jid := c.jid.Load(); jid != nil {
		if err := c.sess.Forget(ctx, *jid); err != nil {
			c.log.Error("logged out, but the store did not confirm the deletion", "err", err)
		}
	}
	return nil
}

func (c *client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cli.Disconnect()
		c.closeErr = c.sess.Close()
	})
	return c.closeErr
}

// handle translates whatsmeow's events into ours. It runs on whatsmeow's
// goroutines under its handler lock: it only forwards, except for an
// incoming message or receipt, whose event it commits to the sink before
// it reports success (whatsmeow acknowledges only then).
func (c *client) handle(raw any) bool {
	switch e := raw.(type) {
	case *events.Connected:
		c.redelivering.Store(false)
		jid := c.cli.Store.GetJID()
		c.jid.Store(&jid)
		c.emit(Connected{JID: jid.String(), PushName: c.cli.Store.PushName})
		// whatsmeow is done with the store for the login: let the
		// connection go now rather than at the idle timeout, so that a
		// restore holds only the stores of sessions still logging in.
		c.sess.Rest()
	case *events.Disconnected:
		c.emit(Disconnected{})
	case *events.LoggedOut:
		// The session hears of the logout only once the credentials are
		// gone from the disk (or could not be deleted).
		ev := LoggedOut{Reason: e.Reason.String()}
		if err := c.forget(); err != nil {
			ev.DeleteFailed = err.Error()
		}
		c.emit(ev)
	case *events.StreamReplaced:
		c.emit(StreamReplaced{})
	case *events.TemporaryBan:
		c.emit(TemporaryBan{Reason: e.Code.String(), Expire: e.Expire})
	case *events.ClientOutdated:
		c.emit(ClientOutdated{})
	case *events.ConnectFailure:
		c.emit(ConnectFailure{Reason: int(e.Reason)})
	case *events.StreamError:
		c.emit(StreamError{Code: e.Code})
	case *events.PairSuccess:
		// whatsmeow saved the device before dispatching the event.
		c.jid.Store(ptrTo(e.ID))
		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		if err := c.sess.Paired(ctx, e.ID); err != nil {
			c.log.Error("paired, but the store did not confirm the credentials: a power loss or restart may lose them", "err", err)
		}
		cancel()
		c.emit(PairSuccess{JID: e.ID.String()})
	case *events.PushNameSetting:
		c.emit(PushNameChanged{Name: e.Action.GetName()})
	case *events.AppStateSyncComplete:
		// A full sync sets the push name without a PushNameSetting event.
		if name := c.cli.Store.PushName; name != "" {
			c.emit(PushNameChanged{Name: name})
		}
	case *events.Message:
		return c.onMessage(e)
	case *events.Receipt:
		return c.onReceipt(e)
	case *events.KeepAliveTimeout:
		c.emit(KeepAliveTimeout{})
	case *events.KeepAliveRestored:
		c.emit(KeepAliveRestored{})
	}
	return true
}
