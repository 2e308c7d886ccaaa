package actors_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// fakeOpener hands out fakeClients and remembers them, so tests can count
// live clients per session and play WhatsApp's side of the events.
type fakeOpener struct {
	dir *store.Dir

	mu       sync.Mutex
	paired   map[string]bool  // sessions whose store holds a device
	openErr  map[string]error // sessions whose store fails to open
	dialErr  error            // every Connect and StartPairing fails with this while set
	clients  map[string][]*fakeClient
	opens    atomic.Int64
	autoJoin bool // Connect emits Connected by itself
	// openGate, when set, holds every Open until it is closed, whatever
	// the context says: a disk that is slow to answer.
	openGate chan struct{}
	// sendErr, when set, fails every Send; sendGate, when set, holds every
	// Send until it is closed.
	sendErr  error
	sendGate chan struct{}
	sending  atomic.Int64 // Sends begun
	// sent is every message the clients sent, in order; read the ids
	// marked read.
	sent []whatsapp.Outgoing
	read []string
}

func newFakeOpener(dir *store.Dir) *fakeOpener {
	return &fakeOpener{dir: dir, paired: map[string]bool{}, openErr: map[string]error{},
		clients: map[string][]*fakeClient{}, autoJoin: true}
}

func (o *fakeOpener) Open(_ context.Context, id string, create bool, emit func(whatsapp.Event)) (whatsapp.Client, error) {
	o.opens.Add(1)
	o.mu.Lock()
	gate := o.openGate
	o.mu.Unlock()
	if gate != nil {
		<-gate
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.openErr[id]; err != nil {
		return nil, err
	}
	if ok, _ := o.dir.Exists(id); !ok {
		if !create {
			return nil, store.ErrNotFound
		}
		p, _ := o.dir.SessionPath(id)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	c := &fakeClient{o: o, id: id, emit: emit, paired: o.paired[id]}
	o.clients[id] = append(o.clients[id], c)
	return c, nil
}

func (o *fakeOpener) setPaired(id string, v bool) {
	o.mu.Lock()
	o.paired[id] = v
	o.mu.Unlock()
}

func (o *fakeOpener) setDialErr(err error) {
	o.mu.Lock()
	o.dialErr = err
	o.mu.Unlock()
}

// live is the number of clients of id that are open (not closed).
func (o *fakeOpener) live(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.clients[id] {
		if !c.closed.Load() {
			n++
		}
	}
	return n
}

// connected is the number of clients of id connected right now.
func (o *fakeOpener) connected(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.clients[id] {
		if c.connected.Load() && !c.closed.Load() {
			n++
		}
	}
	return n
}

// last is id's newest client.
func (o *fakeOpener) last(id string) *fakeClient {
	o.mu.Lock()
	defer o.mu.Unlock()
	cs := o.clients[id]
	if len(cs) == 0 {
		return nil
	}
	return cs[len(cs)-1]
}

type fakeClient struct {
	o      *fakeOpener
	id     string
	emit   func(whatsapp.Event)
	paired bool

	connected atomic.Bool
	closed    atomic.Bool
	connects  atomic.Int64
	// closeGate, when set, makes Close wait until it is closed.
	closeGate chan struct{}
}

func (c *fakeClient) Paired() bool { return c.paired }

// fakeJID is the JID of every paired fake client.
const fakeJID = "15550000000:1@s.whatsapp.net"

func (c *fakeClient) JID() string {
	if c.paired {
		return fakeJID
	}
	return ""
}

func (c *fakeClient) Connect(context.Context) error {
	c.connects.Add(1)
	c.o.mu.Lock()
	err, auto := c.o.dialErr, c.o.autoJoin
	c.o.mu.Unlock()
	if err != nil {
		return err
	}
	c.connected.Store(true)
	if auto {
		c.emit(whatsapp.Connected{JID: fakeJID})
	}
	return nil
}

func (c *fakeClient) StartPairing(context.Context) error {
	c.connects.Add(1)
	c.o.mu.Lock()
	err := c.o.dialErr
	c.o.mu.Unlock()
	if err != nil {
		return err
	}
	c.emit(whatsapp.QRCode{Code: "2@fake-qr", Timeout: 60e9})
	return nil
}

func (c *fakeClient) PairPhone(context.Context, string) (string, error) { return "ABCD-EFGH", nil }

func (c *fakeClient) Logout(context.Context) error {
	if !c.paired {
		return errors.New("not paired")
	}
	c.connected.Store(false)
	return nil
}

// sentAt is the server's timestamp of every fake send.
var sentAt = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

// Send answers as WhatsApp would: numbers starting with 999 are not on
// WhatsApp, every other recipient gets the message.
func (c *fakeClient) Send(ctx context.Context, m whatsapp.Outgoing) (sessions.SentMessage, error) {
	c.o.sending.Add(1)
	c.o.mu.Lock()
	err, gate := c.o.sendErr, c.o.sendGate
	c.o.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return sessions.SentMessage{}, ctx.Err()
		}
	}
	if err != nil {
		return sessions.SentMessage{}, err
	}
	if strings.HasPrefix(strings.TrimPrefix(m.To, "+"), "999") {
		return sessions.SentMessage{}, sessions.ErrNoRecipient
	}
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if m.ID == "" {
		m.ID = whatsapp.NewMessageID()
	}
	c.o.sent = append(c.o.sent, m)
	return sessions.SentMessage{ID: m.ID, Timestamp: sentAt}, nil
}

func (c *fakeClient) MarkRead(_ context.Context, _ string, ids []string) error {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	c.o.read = append(c.o.read, ids...)
	return nil
}

// sentMessages is every message sent so far.
func (o *fakeOpener) sentMessages() []whatsapp.Outgoing {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]whatsapp.Outgoing(nil), o.sent...)
}

func (c *fakeClient) Close() error {
	if c.closeGate != nil {
		<-c.closeGate
	}
	c.connected.Store(false)
	c.closed.Store(true)
	return nil
}
