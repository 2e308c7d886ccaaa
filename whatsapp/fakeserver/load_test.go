package fakeserver_test

import (
	"errors"
	"fmt"
	"sync"
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
