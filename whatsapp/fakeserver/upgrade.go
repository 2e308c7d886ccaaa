package fakeserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"go.mau.fi/whatsmeow/socket"
)

// upgradeTimeout bounds reading the HTTP upgrade request.
const upgradeTimeout = 10 * time.Second

// upgrade reads the HTTP request on a freshly accepted TCP connection and
// turns it into a websocket. It replaces net/http's server so that each
// client costs exactly one goroutine, owned and awaited by Server.
func upgrade(nc net.Conn) (*websocket.Conn, error) {
	if err := nc.SetReadDeadline(time.Now().Add(upgradeTimeout)); err != nil {
		return nil, err
	}
	br := bufio.NewReader(nc)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, fmt.Errorf("read upgrade request: %w", err)
	}
	if err := nc.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	rw := &upgradeWriter{conn: nc, brw: bufio.NewReadWriter(br, bufio.NewWriter(nc)), header: http.Header{}}
	if req.URL.Path != "/ws/chat" {
		http.NotFound(rw, req)
		return nil, errors.Join(fmt.Errorf("unexpected path %q", req.URL.Path), rw.flush())
	}
	ws, err := websocket.Accept(rw, req, &websocket.AcceptOptions{
		// The client sends Origin https://web.whatsapp.com for Host
		// web.whatsapp.com; nothing else reaches a loopback test server.
		InsecureSkipVerify: true,
		// Compression would cost a flate state per connection; the client
		// accepts a server that declines it.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, errors.Join(err, rw.flush())
	}
	// A frame is at most socket.FrameMaxSize bytes plus its length prefix
	// (and the connection header on the first message).
	ws.SetReadLimit(socket.FrameMaxSize + 16)
	return ws, nil
}

// upgradeWriter is the minimal http.ResponseWriter and http.Hijacker that
// websocket.Accept needs: it writes the status line and headers when the
// connection is hijacked (101) or when an error body is written.
type upgradeWriter struct {
	conn        net.Conn
	brw         *bufio.ReadWriter
	header      http.Header
	status      int
	wroteHeader bool
}

func (w *upgradeWriter) Header() http.Header { return w.header }

func (w *upgradeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *upgradeWriter) Write(p []byte) (int, error) {
	if err := w.writeHeader(); err != nil {
		return 0, err
	}
	return w.brw.Write(p)
}

func (w *upgradeWriter) writeHeader() error {
	if w.wroteHeader {
		return nil
	}
	w.wroteHeader = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status != http.StatusSwitchingProtocols {
		w.header.Set("Connection", "close")
	}
	if _, err := fmt.Fprintf(w.brw, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status)); err != nil {
		return err
	}
	if err := w.header.Write(w.brw); err != nil {
		return err
	}
	_, err := w.brw.WriteString("\r\n")
	return err
}

func (w *upgradeWriter) flush() error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	return w.brw.Flush()
}

// Hijack sends the pending response head and hands the connection over.
func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.flush(); err != nil {
		return nil, nil, err
	}
	return w.conn, w.brw, nil
}
