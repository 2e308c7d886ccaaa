package fakeserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

const (
	// handshakeTimeout bounds the Noise handshake, as whatsmeow's own
	// NoiseHandshakeResponseTimeout does on the client side.
	handshakeTimeout = 20 * time.Second
	// closeGrace is how long the server keeps a socket open after a
	// <failure> or <stream:error>, unless the client closes it first.
	// whatsmeow drops nodes still queued when its socket closes, so
	// closing at once could lose the very node that explains the close.
	closeGrace = time.Second
)

// errConnClosed is returned to a control call whose connection went away.
var errConnClosed = errors.New("connection closed")

// conn is one client connection. Its own goroutine (serve) reads and
// handles frames; control calls write to it from other goroutines.
type conn struct {
	srv *Server
	id  uint64
	nc  net.Conn
	log *slog.Logger

	// ctx ends when the connection ends (or the server closes); cancel is
	// called by serve on exit.
	ctx    context.Context
	cancel context.CancelFunc

	// Set by serve before the connection is published in the server's
	// indexes (under srv.mu), then read-only; ws is also read by closeNow,
	// under mu.
	ws     *websocket.Conn
	fc     *frameConn
	user   string // logged-in phone number, "" when unpaired
	device uint16 // logged-in device number
	// recorded: the login is counted open in the device's connection
	// record until the socket ends (under the server's mu).
	recorded bool
	reg      *registration // an unpaired client's registration, nil for a login
	refs     []string      // QR refs shown to an unpaired client

	wmu sync.Mutex // serialises writes: transport counter and websocket
	tr  *transport

	// active is set once the logged-in client went active: from then on
	// the server delivers its device's queue to it (queue.go).
	active atomic.Bool

	mu         sync.Mutex
	waiters    map[string]chan *waBinary.Node // iq id -> reply channel of a control call
	closeTimer *time.Timer
	closed     bool
	pairing    bool                // a control call is completing this pairing
	code       *codeRequest        // the client's pending pairing-code request
	finish     chan *waBinary.Node // companion_finish, handed to EnterPairingCode
}

func (s *Server) newConn(nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	id := s.nextConnID.Add(1)
	return &conn{
		srv:     s,
		id:      id,
		nc:      nc,
		log:     s.log.With("conn", id),
		ctx:     ctx,
		cancel:  cancel,
		waiters: make(map[string]chan *waBinary.Node),
		finish:  make(chan *waBinary.Node, 1),
	}
}

// serve runs the connection: upgrade, handshake, login or pairing, then
// reading nodes until the socket closes.
func (c *conn) serve() {
	defer c.closeNow()
	if err := c.tlsHandshake(); err != nil {
		c.log.Debug("TLS handshake failed", "err", err)
		return
	}
	ws, err := upgrade(c.nc)
	if err != nil {
		c.log.Debug("upgrade failed", "err", err)
		return
	}
	c.mu.Lock()
	c.ws = ws
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}

	hsCtx, hsCancel := context.WithTimeout(c.ctx, handshakeTimeout)
	c.fc = &frameConn{ws: ws, ctx: hsCtx}
	tr, clientStatic, payload, err := handshake(c.fc, c.srv.id)
	hsCancel()
	if err != nil {
		c.log.Debug("handshake failed", "err", err)
		return
	}
	c.fc.ctx = c.ctx
	c.tr = tr

	switch {
	case payload.Username != nil:
		if !c.login(payload.GetUsername(), payload.GetDevice()) {
			return
		}
	case payload.DevicePairingData != nil:
		if err := c.startPairing(clientStatic, payload.DevicePairingData); err != nil {
			c.log.Debug("pairing registration refused", "err", err)
			return
		}
	default:
		c.log.Debug("client payload has neither login nor registration")
		return
	}

	for {
		frame, err := c.fc.readFrame()
		if err != nil {
			c.log.Debug("connection ended", "err", err)
			return
		}
		node, err := c.decode(frame)
		if err != nil {
			c.log.Warn("bad frame from client", "err", err)
			return
		}
		c.handleNode(node)
	}
}

func (c *conn) decode(frame []byte) (*waBinary.Node, error) {
	plain, err := c.tr.open(frame)
	if err != nil {
		return nil, fmt.Errorf("decrypt frame: %w", err)
	}
	if len(plain) == 0 {
		return nil, errors.New("empty frame")
	}
	data, err := waBinary.Unpack(plain)
	if err != nil {
		return nil, fmt.Errorf("unpack frame: %w", err)
	}
	return waBinary.Unmarshal(data)
}

// send encrypts and writes one node.
func (c *conn) send(node waBinary.Node) error {
	data, err := waBinary.Marshal(node)
	if err != nil {
		return fmt.Errorf("marshal %s node: %w", node.Tag, err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.fc.writeFrame(c.tr.seal(data)); err != nil {
		return fmt.Errorf("write %s node: %w", node.Tag, err)
	}
	return nil
}

// request sends an iq and waits for the client's result or error.
func (c *conn) request(ctx context.Context, node waBinary.Node) (*waBinary.Node, error) {
	id, _ := node.Attrs["id"].(string)
	ch := make(chan *waBinary.Node, 1)
	c.mu.Lock()
	c.waiters[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
	}()
	if err := c.send(node); err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, errConnClosed
	}
}

// handleNode answers what the client sends. Nodes that need no answer
// (ib, presence, chatstate) are dropped.
func (c *conn) handleNode(node *waBinary.Node) {
	if c.user == "" && node.Tag != "iq" {
		return
	}
	switch node.Tag {
	case "iq":
	case "message":
		c.handleMessage(node)
		return
	case "receipt":
		c.handleReceipt(node)
		return
	case "ack":
		c.handleAck(node)
		return
	default:
		return
	}
	ag := node.AttrGetter()
	typ := ag.OptionalString("type")
	id := ag.OptionalString("id")
	if typ == "result" || typ == "error" {
		c.mu.Lock()
		ch := c.waiters[id]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- node: // buffered for the one reply expected
			default: // a duplicate reply
			}
		}
		return
	}
	var reply *waBinary.Node
	var then func() // runs after the reply is sent
	switch ag.OptionalString("xmlns") {
	case "w:p":
		if c.ignoringKeepalives() {
			return
		}
	case "encrypt":
		reply = c.handleEncryptIQ(node)
	case "passive":
		// Going active is when the server delivers what waited for the
		// device; a freshly paired one gets its phone's initial sync.
		if _, active := node.GetOptionalChildByTag("active"); active && c.user != "" {
			then = func() {
				c.sendInitialSync()
				c.goActive()
			}
		}
	case "usync":
		if c.user != "" {
			reply = c.handleUsync(node)
		}
	case "privacy":
		if ag.OptionalString("type") == "get" {
			reply = privacySettings(node)
		}
	case "w:sync:app:state":
		if c.user != "" {
			reply = c.handleAppStateIQ(node)
		}
	case "md":
		if child, ok := node.GetOptionalChildByTag("link_code_companion_reg"); ok {
			reply = c.handleCodeRegistration(&child)
		}
		if _, ok := node.GetOptionalChildByTag("remove-companion-device"); ok && c.user != "" {
			// A logout: WhatsApp forgets the device as if the phone had
			// removed it.
			c.srv.mu.Lock()
			err := c.srv.unlinkLocked(deviceRef{user: c.user, device: c.device})
			c.srv.mu.Unlock()
			c.srv.dropQueue(deviceRef{user: c.user, device: c.device})
			if err != nil {
				c.log.Warn("logout not remembered", "err", err)
			}
		}
	}
	if reply == nil {
		reply = &waBinary.Node{}
	}
	reply.Tag = "iq"
	if reply.Attrs == nil {
		reply.Attrs = waBinary.Attrs{}
	}
	reply.Attrs["type"] = "result"
	reply.Attrs["id"] = id
	reply.Attrs["from"] = types.ServerJID
	if err := c.send(*reply); err != nil {
		c.log.Debug("reply failed", "err", err)
		return
	}
	if then != nil {
		then()
	}
}

func (c *conn) ignoringKeepalives() bool {
	if c.user == "" {
		return false
	}
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	u := c.srv.users[c.user]
	return u != nil && u.ignoreKeepalives
}

// sendStreamError sends <stream:error> and closes the socket after a grace
// period.
func (c *conn) sendStreamError(code string, conflict string) {
	node := waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{}}
	if code != "" {
		node.Attrs["code"] = code
	}
	if conflict != "" {
		node.Content = []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": conflict}}}
	}
	if err := c.send(node); err != nil {
		c.log.Debug("stream error not sent", "err", err)
	}
	c.closeAfter(closeGrace)
}

// endStream ends the stream as the server does when it gives up on a
// connection: </stream> (whatsmeow's "xmlstreamend"), then close.
func (c *conn) endStream() {
	if err := c.send(waBinary.Node{Tag: "xmlstreamend"}); err != nil {
		c.log.Debug("stream end not sent", "err", err)
	}
	c.closeNow()
}

// closeAfter closes the socket after d unless it closes earlier.
func (c *conn) closeAfter(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closeTimer != nil {
		return
	}
	c.closeTimer = time.AfterFunc(d, c.closeNow)
}

// closeNow closes the socket abruptly, as a dropped network would. The
// connection's goroutine then ends.
func (c *conn) closeNow() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	ws := c.ws
	c.mu.Unlock()

	c.cancel()
	if ws != nil {
		_ = ws.CloseNow()
	} else {
		_ = c.nc.Close()
	}
}

// tlsHandshake completes the TLS handshake before anything is read, so that
// a client that does not trust the server fails here, and counts it.
func (c *conn) tlsHandshake() error {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, upgradeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.srv.tlsHandshakes.Add(1)
	if tc.ConnectionState().DidResume {
		c.srv.tlsResumed.Add(1)
	}
	return nil
}
