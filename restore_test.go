package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// seed writes n paired sessions into root, as an earlier run would have
// left them, and returns their ids and users.
func seed(t *testing.T, root string, n int) (ids, users []string) {
	t.Helper()
	seeds := make([]fakeserver.Seed, n)
	for i := range seeds {
		seeds[i] = fakeserver.Seed{ID: fmt.Sprintf("user%04d", i), User: fmt.Sprintf("1555700%04d", i)}
		ids, users = append(ids, seeds[i].ID), append(users, seeds[i].User)
	}
	if err := fakeserver.SeedStores(context.Background(), root, seeds, fakeserver.SeedOptions{Workers: 4, CleanClose: true}); err != nil {
		t.Fatal(err)
	}
	return ids, users
}

func TestTwoHundredStoredSessionsComeBackAtOnce(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	root := t.TempDir()
	began := time.Now()
	ids, users := seed(t, root, 200)
	t.Logf("seeded 200 stores in %v", time.Since(began))
	began = time.Now()
	svc := e2e.Start(t, e2e.Config(root, f))
	// A deadline for liveness, not speed (BENCHMARKS.md has the restore's
	// speed): under -race, beside the other packages' tests and a browser
	// on two cores, 200 restores have taken over 10 s.
	e2e.WaitFor(t, time.Minute, "every session connected", func() (bool, string) {
		_, fleet := svc.Call("GET", "/api/whatsapp/sessions/status", "")
		counts, _ := fleet["counts"].(map[string]any)
		return counts["connected"] == float64(len(ids)), fmt.Sprint(counts)
	}, svc.Logs)
	t.Logf("200 sessions connected %v after start", time.Since(began))
	for _, u := range users {
		if n, _ := f.Connections(context.Background(), u); n != 1 {
			t.Fatalf("%s has %d live connections, want 1", u, n)
		}
	}
	_, fleet := svc.Call("GET", "/api/whatsapp/sessions/status", "")
	if r, _ := fleet["restore"].(map[string]any); r["restored"] != 200.0 || r["finished"] == nil {
		t.Errorf("restore progress: %v", r)
	}
}

func TestLoginFailuresAtConnect(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	root := t.TempDir()
	_, users := seed(t, root, 3) // user0000 logged out, user0001 503, user0002 fine
	ctx := context.Background()
	if err := f.SetLoginFailure(ctx, users[0], fakeserver.LoginFailure{Reason: 401}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetLoginFailure(ctx, users[1], fakeserver.LoginFailure{Reason: 503}); err != nil {
		t.Fatal(err)
	}
	svc := e2e.Start(t, e2e.Config(root, f))

	st := svc.WaitState("user0000", "needs_pairing", e2e.Wait)
	if e2e.ErrCode(st) != "logged_out" {
		t.Errorf("401 at login: %v", st)
	}
	eventuallyOK(t, func() bool {
		s := svc.Status("user0001")
		return s.State == "reconnecting" && s.NextRetryAt != nil && s.Reconnects >= 1
	})
	svc.WaitState("user0002", "connected", e2e.Wait)

	// 401 is never retried; 503 is, and comes back once WhatsApp does.
	if err := f.SetLoginFailure(ctx, users[1], fakeserver.LoginFailure{}); err != nil {
		t.Fatal(err)
	}
	svc.WaitState("user0001", "connected", e2e.Wait)
	if st := svc.Status("user0000"); st.State != "needs_pairing" || st.Reconnects != 0 {
		t.Errorf("a logged-out session was retried: %v", st)
	}
}
