package faults_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// dialRecorder is a TCP proxy in front of the fake server that records
// when each connection to it was opened: every attempt a client makes to
// reach "WhatsApp", whether its login then succeeds or not, timed before
// any handshake work (which, on a busy machine, would blur the timing).
type dialRecorder struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu     sync.Mutex
	dials  moments // when each connection was opened
	conns  map[net.Conn]struct{}
	closed bool
}

func newDialRecorder(t *testing.T, upstream string) *dialRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dialRecorder{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	d.wg.Add(1)
	go d.accept()
	t.Cleanup(d.close)
	return d
}

// Addr is where clients dial instead of the fake server.
func (d *dialRecorder) Addr() string { return d.ln.Addr().String() }

func (d *dialRecorder) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		at := time.Now()
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return
		}
		d.dials.add(at)
		d.conns[c] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go d.pipe(c)
	}
}

// pipe joins c to the fake server; when either side closes, both do, so a
// socket the server drops is dropped for the client too.
func (d *dialRecorder) pipe(c net.Conn) {
	defer d.wg.Done()
	up, err := net.Dial("tcp", d.upstream)
	if err == nil {
		d.mu.Lock()
		d.conns[up] = struct{}{}
		d.mu.Unlock()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		<-done
		up.Close()
		c.Close()
		<-done
	}
	c.Close()
	d.mu.Lock()
	delete(d.conns, c)
	delete(d.conns, up)
	d.mu.Unlock()
}

func (d *dialRecorder) close() {
	d.mu.Lock()
	d.closed = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.ln.Close()
	d.wg.Wait()
}
