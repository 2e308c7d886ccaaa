package whatsapp_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// The receive benchmarks time connected sessions (StoreOpener clients over
// real stores) receiving contacts' messages: mostly their stores' commits
// (whatsmeow's decryption transaction and the clearing of the buffered
// plaintext), whose fsyncs depend on store.DSN's synchronous level. The
// sink commits at once (no outbox). Run them under
// `strace -f -c -e trace=fsync,fdatasync` to count the fsyncs.

// BenchmarkReceiveFromOneContact is one session receiving one contact's
// messages, one after another as whatsmeow handles them: the session's
// serial cost per message.
func BenchmarkReceiveFromOneContact(b *testing.B) {
	benchmarkReceive(b, 1)
}

// BenchmarkReceiveAcrossSessions is 20 sessions, each receiving its own
// contact's messages at once: the stores' commits share one file system.
func BenchmarkReceiveAcrossSessions(b *testing.B) {
	benchmarkReceive(b, 20)
}

func benchmarkReceive(b *testing.B, sessions int) {
	fakeserver.UseTestRootKey()
	srv, err := fakeserver.Start(fakeserver.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	hc, err := fakeserver.HTTPClient(srv.Addr(), srv.CACertPEM())
	if err != nil {
		b.Fatal(err)
	}
	dir, err := store.OpenDir(filepath.Join(b.TempDir(), "sessions"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dir.Close() })
	ctx := context.Background()
	opener := whatsapp.NewStoreOpener(dir, whatsapp.Options{HTTPClient: hc, StoreIdleTimeout: time.Minute,
		Sink: whatsapp.DiscardEvents{}})
	users := make([]string, sessions)
	connected := make(chan struct{}, sessions)
	for i := range users {
		users[i] = fmt.Sprintf("155503100%02d", i)
		id := fmt.Sprintf("bench%d", i)
		s, err := dir.Open(ctx, id, store.OpenOptions{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fakeserver.SeedDevice(ctx, s.Container, users[i]); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		cli, err := opener.Open(ctx, id, false, func(e whatsapp.Event) {
			if _, ok := e.(whatsapp.Connected); ok {
				connected <- struct{}{}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cli.Close() })
		if err := cli.Connect(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for range sessions {
		select {
		case <-connected:
		case <-time.After(30 * time.Second):
			b.Fatal("not connected within 30 s")
		}
	}
	const contact = "15557770001"
	send := func(user string, i int64) {
		if _, err := srv.ContactSend(ctx, user, contact, fmt.Sprintf("message %d, of some length, as people write them", i), ""); err != nil {
			b.Error(err)
		}
	}
	acknowledged := func() {
		deadline := time.Now().Add(time.Minute)
		for {
			st, err := srv.Stats(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if st.Queued == 0 {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d messages still unacknowledged after a minute", st.Queued)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The contact's first message (a prekey message) sets up the Signal
	// session: not what is measured.
	for _, user := range users {
		send(user, -1)
	}
	acknowledged()

	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			send(users[n%int64(sessions)], n)
		}
	})
	acknowledged()
}
