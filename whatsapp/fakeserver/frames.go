package fakeserver

import (
	"context"
	"fmt"
	"time"

	"github.com/coder/websocket"
	"go.mau.fi/whatsmeow/socket"
)

// writeTimeout bounds one websocket write, so a client that stopped reading
// cannot block a control call forever.
const writeTimeout = 10 * time.Second

// frameConn splits the websocket byte stream into WhatsApp frames: a 3-byte
// big-endian length and the frame. The client's first message starts with
// the 4-byte connection header ("WA", magic, dictionary version); the server
// sends no header.
type frameConn struct {
	ws     *websocket.Conn
	ctx    context.Context // ends when the connection is closed
	header []byte          // the client's connection header, once read
	buf    []byte          // bytes received but not yet returned as frames
}

// readFrame returns the next complete frame. Only the connection's own
// goroutine calls it.
func (fc *frameConn) readFrame() ([]byte, error) {
	for {
		if fc.header != nil && len(fc.buf) >= socket.FrameLengthSize {
			n := int(fc.buf[0])<<16 | int(fc.buf[1])<<8 | int(fc.buf[2])
			if len(fc.buf) >= socket.FrameLengthSize+n {
				frame := fc.buf[socket.FrameLengthSize : socket.FrameLengthSize+n]
				fc.buf = fc.buf[socket.FrameLengthSize+n:]
				if len(fc.buf) == 0 {
					fc.buf = nil // let the message buffer be collected
				}
				return frame, nil
			}
		}
		typ, data, err := fc.ws.Read(fc.ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageBinary {
			continue
		}
		fc.buf = append(fc.buf, data...)
		if fc.header == nil {
			if len(fc.buf) < len(socket.WAConnHeader) {
				continue
			}
			fc.header = fc.buf[:len(socket.WAConnHeader):len(socket.WAConnHeader)]
			fc.buf = fc.buf[len(socket.WAConnHeader):]
		}
	}
}

// writeFrame sends one frame as one websocket message. Callers serialise
// writes.
func (fc *frameConn) writeFrame(data []byte) error {
	if len(data) >= socket.FrameMaxSize {
		return fmt.Errorf("frame of %d bytes is too large", len(data))
	}
	msg := make([]byte, socket.FrameLengthSize+len(data))
	msg[0], msg[1], msg[2] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(msg[socket.FrameLengthSize:], data)
	ctx, cancel := context.WithTimeout(fc.ctx, writeTimeout)
	defer cancel()
	return fc.ws.Write(ctx, websocket.MessageBinary, msg)
}
