package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// seed writes n paired sessions into dir with whatsmeow's own sqlstore, as
// an earlier run would have left them, and returns their ids and users.
func seed(t *testing.T, root string, n int) (ids, users []string) {
	t.Helper()
	dir, err := store.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for i := range n {
		id, user := fmt.Sprintf("user%04d", i), fmt.Sprintf("1555700%04d", i)
		s, err := dir.Open(context.Background(), id, store.OpenOptions{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fakeserver.SeedDevice(context.Background(), s.Container, user); err != nil {
			t.Fatal(err)
		}
		s.Close()
		ids, users = append(ids, id), append(users, user)
	}
	return ids, users
}

func TestTwoHundredStoredSessionsComeBackAtOnce(t *testing.T) {
	f := newFake(t)
	root := t.TempDir()
	began := time.Now()
	ids, users := seed(t, root, 200)
	t.Logf("seeded 200 stores in %v", time.Since(began))
	began = time.Now()
	svc := start(t, testConfig(root, f))
	eventuallyOK(t, func() bool {
		_, fleet := svc.call("GET", "/api/whatsapp/sessions/status", "")
		counts, _ := fleet["counts"].(map[string]any)
		return counts["connected"] == float64(len(ids))
	})
	t.Logf("200 sessions connected %v after start", time.Since(began))
	for _, u := range users {
		if n, _ := f.Connections(context.Background(), u); n != 1 {
			t.Fatalf("%s has %d live connections, want 1", u, n)
		}
	}
	_, fleet := svc.call("GET", "/api/whatsapp/sessions/status", "")
	if r, _ := fleet["restore"].(map[string]any); r["restored"] != 200.0 || r["finished"] == nil {
		t.Errorf("restore progress: %v", r)
	}
}

func TestLoginFailuresAtConnect(t *testing.T) {
	f := newFake(t)
	root := t.TempDir()
	_, users := seed(t, root, 3) // user0000 logged out, user0001 503, user0002 fine
	ctx := context.Background()
	if err := f.SetLoginFailure(ctx, users[0], fakeserver.LoginFailure{Reason: 401}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetLoginFailure(ctx, users[1], fakeserver.LoginFailure{Reason: 503}); err != nil {
		t.Fatal(err)
	}
	svc := start(t, testConfig(root, f))

	st := svc.waitState("user0000", "needs_pairing")
	if e, _ := st["error"].(map[string]any); e["code"] != "logged_out" {
		t.Errorf("401 at login: %v", st)
	}
	eventuallyOK(t, func() bool {
		s := svc.status("user0001")
		return s["state"] == "reconnecting" && s["nextRetryAt"] != nil && s["reconnects"].(float64) >= 1
	})
	svc.waitState("user0002", "connected")

	// 401 is never retried; 503 is, and comes back once WhatsApp does.
	if err := f.SetLoginFailure(ctx, users[1], fakeserver.LoginFailure{}); err != nil {
		t.Fatal(err)
	}
	svc.waitState("user0001", "connected")
	if st := svc.status("user0000"); st["state"] != "needs_pairing" || st["reconnects"] != 0.0 {
		t.Errorf("a logged-out session was retried: %v", st)
	}
}
