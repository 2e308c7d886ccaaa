package idempotency

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The SQLite store's connection closes once unused for idleTimeout (its
// SQLite memory with it), and an answer recorded before the close is
// found afterwards on a connection opened anew (nothing lost).
func TestIdleConnectionCloses(t *testing.T) {
	defer func(was time.Duration) { idleTimeout = was }(idleTimeout)
	idleTimeout = 100 * time.Millisecond
	s, err := Open(filepath.Join(t.TempDir(), File), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := sessions.SendRequest{To: "+4915112345678", Text: "hello", IdempotencyKey: "order-1"}
	c, err := s.Begin(ctx, "alice", req, func() string { return "id-1" })
	if err != nil {
		t.Fatal(err)
	}
	sent := sessions.SentMessage{ID: c.MessageID, Timestamp: time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)}
	if err := s.Finish(ctx, "alice", req.IdempotencyKey, sent); err != nil {
		t.Fatal(err)
	}
	for s.db.Stats().OpenConnections > 0 {
		if ctx.Err() != nil {
			t.Fatalf("%d connections still open after %v unused", s.db.Stats().OpenConnections, idleTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err = s.Begin(ctx, "alice", req, func() string { return "id-2" })
	if err != nil || c.Answer == nil || *c.Answer != sent {
		t.Fatalf("Begin after the close = %+v, %v; want the answer %+v", c, err, sent)
	}
}
