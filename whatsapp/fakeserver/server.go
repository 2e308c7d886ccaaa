package fakeserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/whatsmeow/types"
)

// Options configures Start.
type Options struct {
	Addr string       // listen address; "" means "127.0.0.1:0"
	Log  *slog.Logger // nil discards
	// StateFile keeps what WhatsApp remembers across the server's
	// restarts: the devices the phone unlinked, and the public keys of the
	// devices paired with it. "" keeps it in memory. Signal sessions of
	// fake contacts and queued messages are not kept: after a restart,
	// retry receipts open new sessions.
	StateFile string
	// QRCodes is how many QR codes an unpaired client gets to show (0:
	// six, as WhatsApp sends). whatsmeow shows the first of six for 60 s
	// and each other code for 20 s, so with fewer than six every code
	// lasts 20 s: tests that watch codes rotate use it.
	QRCodes int
}

// Server is a running fake WhatsApp server. It is safe for concurrent use.
type Server struct {
	log *slog.Logger
	ln  net.Listener // TLS over TCP
	id  *serverIdentity
	tls *serverTLS

	// ctx ends when Close starts; every connection's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and one goroutine per connection

	nextConnID atomic.Uint64
	nextIQID   atomic.Uint64

	tlsHandshakes atomic.Int64 // completed server-side TLS handshakes
	tlsResumed    atomic.Int64 // of which resumed a TLS session

	mu        sync.Mutex
	closed    bool
	conns     map[*conn]struct{}          // every accepted connection
	users     map[string]*userState       // by phone number
	unpaired  map[*conn]struct{}          // connections waiting to be paired
	refs      map[string]*conn            // QR ref -> unpaired connection that showed it
	codeConns map[string]*conn            // phone -> unpaired connection that asked for a pairing code
	phones    map[string]struct{}         // phone numbers assigned or used for pairing by this server
	devices   map[string]uint16           // phone -> last device number it paired
	linked    map[types.JID]*linkedDevice // paired devices still owed their initial sync
	// deviceNames is the name each paired phone number's companion gave
	// itself, as the phone lists it.
	deviceNames map[string]string
	appState    map[types.JID]*appState // app state the phone shared with a device
	// unlinked holds the devices the phone removed: their logins are
	// refused. Kept in statePath when it is set.
	unlinked  map[deviceRef]struct{}
	statePath string
	qrCodes   int // refs per pair-device iq
	logins    int
	pairings  int
	// companions are the public keys of the linked devices the server
	// knows, by phone number and device number (prekeys.go).
	companions map[string]map[uint16]*companionKeys
	// queues hold, per device, what the server delivers to it until it
	// acknowledges it (messages.go).
	queues map[deviceRef]*deviceQueue

	pmu       sync.Mutex          // guards primaries
	primaries map[string]*primary // the primary device of each number used

	rmu      sync.Mutex                           // guards the records below
	sent     map[string]*recordLog[SentMessage]   // by account: what its contacts decrypted
	received map[string]*recordLog[receivedEntry] // by account: what its contacts sent it

	undecryptable atomic.Int64 // <enc> elements no primary could decrypt

	// record is every device's connection record (connrecord.go), under mu.
	record map[deviceRef]*DeviceConnections
}

// userState is what the server holds about one phone number.
type userState struct {
	failure          LoginFailure
	ignoreKeepalives bool
	live             map[*conn]struct{} // logged-in connections
}

// Start listens on opts.Addr and serves TLS, with a certificate for
// ServerName from a CA made for this server (CACertPEM), until Close.
func Start(opts Options) (*Server, error) {
	if opts.QRCodes < 0 {
		return nil, fmt.Errorf("fakeserver: QRCodes is %d, want 0 (the default) or more", opts.QRCodes)
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := newServerIdentity(time.Now())
	if err != nil {
		return nil, err
	}
	st, err := newServerTLS(time.Now())
	if err != nil {
		return nil, err
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fake whatsapp server: listen on %s: %w", addr, err)
	}
	ln := tls.NewListener(tcp, st.config)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:         log,
		ln:          ln,
		id:          id,
		tls:         st,
		ctx:         ctx,
		cancel:      cancel,
		conns:       make(map[*conn]struct{}),
		users:       make(map[string]*userState),
		unpaired:    make(map[*conn]struct{}),
		refs:        make(map[string]*conn),
		codeConns:   make(map[string]*conn),
		phones:      make(map[string]struct{}),
		devices:     make(map[string]uint16),
		companions:  make(map[string]map[uint16]*companionKeys),
		queues:      make(map[deviceRef]*deviceQueue),
		primaries:   make(map[string]*primary),
		sent:        make(map[string]*recordLog[SentMessage]),
		received:    make(map[string]*recordLog[receivedEntry]),
		linked:      make(map[types.JID]*linkedDevice),
		deviceNames: make(map[string]string),
		appState:    make(map[types.JID]*appState),
		unlinked:    make(map[deviceRef]struct{}),
		record:      make(map[deviceRef]*DeviceConnections),
		statePath:   opts.StateFile,
		qrCodes:     cmp.Or(opts.QRCodes, qrRefCount),
	}
	if s.statePath != "" {
		if err := s.loadState(s.statePath); err != nil {
			cancel()
			_ = ln.Close()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.acceptLoop()
	log.Info("fake whatsapp server listening", "addr", s.Addr())
	return s, nil
}

// Addr is the address clients dial, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return s.ln.Addr().String()
}

// Close stops listening, closes every connection and waits for all of the
// server's goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	s.cancel()
	err := s.ln.Close()
	for _, c := range conns {
		c.closeNow()
	}
	s.wg.Wait()
	s.log.Info("fake whatsapp server stopped")
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			// Temporary errors (EMFILE under a benchmark): back off
			// like net/http does instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-s.ctx.Done():
				return
			}
		}
		delay = 0
		c := s.newConn(nc)
		if !s.track(c) {
			_ = nc.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			c.serve()
		}()
	}
}

// track registers a new connection; false once Close has started, so that
// Close never misses a connection.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// untrack forgets a connection that ended, in every index it may be in.
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.forgetPairingLocked(c)
	s.closedLocked(c)
	if c.user != "" {
		if u := s.users[c.user]; u != nil {
			delete(u.live, c)
		}
	}
}

// forgetPairingLocked removes c from the pairing indexes.
func (s *Server) forgetPairingLocked(c *conn) {
	if _, ok := s.unpaired[c]; !ok {
		return
	}
	delete(s.unpaired, c)
	for _, ref := range c.refs {
		if s.refs[ref] == c {
			delete(s.refs, ref)
		}
	}
	for phone, cc := range s.codeConns {
		if cc == c {
			delete(s.codeConns, phone)
		}
	}
}

// userLocked returns the state of user, creating it.
func (s *Server) userLocked(user string) *userState {
	u := s.users[user]
	if u == nil {
		u = &userState{live: make(map[*conn]struct{})}
		s.users[user] = u
	}
	return u
}

// takeLive removes and returns the logged-in connections of user (all
// users if user is ""): from now on they do not count as connected.
func (s *Server) takeLive(user string) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLiveLocked(user, func(*conn) bool { return true })
}

// takeLiveLocked removes and returns the logged-in connections of user
// (all users if user is "") that match.
func (s *Server) takeLiveLocked(user string, match func(*conn) bool) []*conn {
	var out []*conn
	for name, u := range s.users {
		if user != "" && name != user {
			continue
		}
		for c := range u.live {
			if match(c) {
				out = append(out, c)
				delete(u.live, c)
			}
		}
	}
	return out
}

// newIQID returns an id for an iq the server sends.
func (s *Server) newIQID() string {
	return "fs." + strconv.FormatUint(s.nextIQID.Add(1), 10)
}
