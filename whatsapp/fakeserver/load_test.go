package fakeserver_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types/events"
)

// TestManyClients connects 200 seeded clients, each on its own store file,
// at once.
func TestManyClients(t *testing.T) {
	const n = 200
	srv := startServer(t)
	ctx := ctxTimeout(t)

	// Seed the stores a few at a time, from a copy of an empty store.
	empty := emptyStore(t)
	clients := make([]*testClient, n)
	devs := make([]*store.Device, n)
	seedErrs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range devs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			devs[i], seedErrs[i] = seedStore(t, empty, fmt.Sprintf("1555100%04d", i))
		})
	}
	wg.Wait()
	if err := errors.Join(seedErrs...); err != nil {
		t.Fatal(err)
	}
	for i, dev := range devs {
		clients[i] = newClient(t, srv, dev)
	}
	start := time.Now()
	errs := make(chan error, n)
	for _, tc := range clients {
		wg.Go(func() {
			if err := tc.Connect(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("connect: %v", err)
	}
	for _, tc := range clients {
		waitEvent[*events.Connected](t, tc, nil)
	}
	t.Logf("%d clients connected in %s", n, time.Since(start))

	st, err := srv.Stats(ctx)
	if err != nil || st.Live != n || st.Logins != n {
		t.Fatalf("Stats = %+v, %v; want %d live", st, err, n)
	}
	dropped, err := srv.DropAll(ctx)
	if err != nil || dropped != n {
		t.Fatalf("DropAll = %d, %v; want %d", dropped, err, n)
	}
	for _, tc := range clients {
		waitEvent[*events.Disconnected](t, tc, nil)
	}
}

// TestContactsSendToManySessions has contacts send 1,000 messages to 50
// connected sessions from 8 goroutines at once: each session gets each of
// its messages once, and acknowledges it.
func TestContactsSendToManySessions(t *testing.T) {
	const sessions, messages, senders = 50, 1000, 8
	srv := startServer(t)
	ctx := ctxTimeout(t)
	clients := make([]*testClient, sessions)
	users := make([]string, sessions)
	for i := range clients {
		users[i] = fmt.Sprintf("1555200%04d", i)
		clients[i] = connectedSeed(t, srv, users[i])
	}
	var next atomic.Int64
	errs := make(chan error, senders)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for n := next.Add(1); n <= messages; n = next.Add(1) {
				i := int(n) % sessions
				// Two contacts per session, so sessions are opened and reused.
				from := fmt.Sprintf("1555300%04d", int(n)%(2*sessions))
				if _, err := srv.ContactSend(ctx, users[i], from, fmt.Sprintf("message %d", n), ""); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, "every message acknowledged", func() bool {
		st, _ := srv.Stats(ctx)
		return st.Queued == 0
	})
	total := 0
	for i, tc := range clients {
		seen := map[string]bool{}
		got := 0
		for _, evt := range tc.seen() {
			if m, ok := evt.(*events.Message); ok {
				if seen[m.Info.ID] {
					t.Errorf("session %d: message %s twice", i, m.Info.ID)
				}
				seen[m.Info.ID] = true
				got++
			}
		}
		msgs, _ := srv.Received(ctx, users[i])
		for _, m := range msgs {
			if !m.Delivered || m.Pending != 0 || m.Retries != 0 {
				t.Errorf("session %d, message %+v: want delivered once, no retry", i, m)
			}
		}
		if got != len(msgs) {
			t.Errorf("session %d: %d messages at the client, %d sent", i, got, len(msgs))
		}
		total += got
	}
	if st, _ := srv.Stats(ctx); total != messages || st.Undecryptable != 0 {
		t.Errorf("%d messages delivered, want %d; %d undecryptable", total, messages, st.Undecryptable)
	}
}
