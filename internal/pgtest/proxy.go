package pgtest

import (
	"fmt"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of a server that a test can cut off and
// restore, to show what a node does when the database stops answering.
// Cut behaves like a network partition, not like a crash: nothing is
// closed, bytes simply stop flowing both ways (and new connections are
// accepted but not forwarded) until Restore.
type Proxy struct {
	// Addr is where the proxy listens ("127.0.0.1:port").
	Addr string

	target string
	ln     net.Listener

	mu     sync.Mutex
	cut    bool
	open   chan struct{} // closed while not cut
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to s, closed in tb's cleanup.
func (s *Server) NewProxy(tb testing.TB) *Proxy {
	tb.Helper()
	return NewProxy(tb, fmt.Sprintf("%s:%d", s.Host, s.Port))
}

// NewProxy starts a proxy to target ("host:port"), closed in tb's cleanup.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, open: open, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// URL is the connection string of database db through the proxy.
func (p *Proxy) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.Addr, db)
}

// Cut stops every byte both ways, on open and new connections alike.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut = true
		p.open = make(chan struct{})
	}
}

// Restore lets bytes flow again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.open)
	}
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	if p.cut {
		p.cut = false
		close(p.open)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// gate waits until bytes may flow; false when the proxy is closed.
func (p *Proxy) gate() bool {
	p.mu.Lock()
	open, closed := p.open, p.closed
	p.mu.Unlock()
	if closed {
		return false
	}
	<-open
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed
}

// track remembers c to close it with the proxy; false when already closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	if !p.gate() {
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	p.wg.Add(2)
	go p.pipe(server, client, done)
	go p.pipe(client, server, done)
	<-done // one side ended: end the other
}

// pipe copies src to dst, holding each chunk while the proxy is cut.
func (p *Proxy) pipe(dst, src net.Conn, done chan<- struct{}) {
	defer p.wg.Done()
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
