package whatsapp_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// BenchmarkReceiveFromOneContact is one connected session (a StoreOpener
// client over a real store) receiving a contact's messages, one after
// another as whatsmeow handles them: the time per message is the session's
// serial cost, mostly its store's commits (the decryption transaction and
// the clearing of the buffered plaintext), whose fsyncs depend on
// store.DSN's synchronous level. The sink commits at once (no outbox). Run
// under `strace -f -c -e trace=fsync,fdatasync` to count the fsyncs.
func BenchmarkReceiveFromOneContact(b *testing.B) {
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
	const user, contact = "15550310001", "15557770001"
	s, err := dir.Open(ctx, "bench", store.OpenOptions{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fakeserver.SeedDevice(ctx, s.Container, user); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}

	connected := make(chan struct{}, 1)
	opener := whatsapp.NewStoreOpener(dir, whatsapp.Options{HTTPClient: hc, StoreIdleTimeout: time.Minute,
		Sink: whatsapp.DiscardEvents{}})
	cli, err := opener.Open(ctx, "bench", false, func(e whatsapp.Event) {
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
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		b.Fatal("not connected within 30 s")
	}
	// The contact's first message (a prekey message) sets up the Signal
	// session: not what is measured.
	send := func(i int) {
		if _, err := srv.ContactSend(ctx, user, contact, fmt.Sprintf("message %d, of some length, as people write them", i), ""); err != nil {
			b.Fatal(err)
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
	send(-1)
	acknowledged()

	b.ResetTimer()
	for i := range b.N {
		send(i)
	}
	acknowledged()
}
