package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Close waits for a connection still in use (as a whatsmeow goroutine's
// query holds one after database/sql's Close), marks the store clean only
// after it closed, and no connection opens after Close.
func TestCloseWaitsForAConnectionInUse(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	s, err := d.Open(ctx, "busy", OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()

	// Once Close waits for the connection, it must still be waiting.
	for deadline := time.Now().Add(5 * time.Second); !s.connector.isShut(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Close never began waiting for the connections")
		}
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a connection was in use", err)
	default:
	}
	marker := filepath.Join(d.Root(), "session-busy", cleanFile)
	if _, err := os.Lstat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("clean marker while a connection is open: %v", err)
	}
	if _, err := s.connector.Connect(ctx); !errors.Is(err, errClosed) {
		t.Fatalf("a connection opened after Close: %v", err)
	}

	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the connection closed")
	}
	if _, err := os.Lstat(marker); err != nil {
		t.Fatalf("no clean marker after a clean close: %v", err)
	}
}

// isShut reports whether shutDown began.
func (c *watchedConnector) isShut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shut
}
