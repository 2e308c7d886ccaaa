package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	apihttp "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// routes is which client method covers each route of http/openapi.json.
var routes = map[string]string{
	"GET /healthz":                                             "Health",
	"HEAD /healthz":                                            "Do",
	"GET /readyz":                                              "Ready",
	"HEAD /readyz":                                             "Do",
	"GET /metrics":                                             "Metrics",
	"GET /openapi.json":                                        "OpenAPI",
	"POST /api/whatsapp/sessions/restore":                      "Restore",
	"GET /api/whatsapp/sessions/status":                        "Fleet",
	"GET /api/whatsapp/info":                                   "Info",
	"GET /api/whatsapp/events":                                 "Events",
	"POST /api/whatsapp/session/{senderId}":                    "Create",
	"DELETE /api/whatsapp/session/{senderId}":                  "Delete",
	"GET /api/whatsapp/session/{senderId}/status":              "Status",
	"GET /api/whatsapp/session/{senderId}/qr":                  "QR",
	"POST /api/whatsapp/session/{senderId}/pair-phone":         "PairPhone",
	"POST /api/whatsapp/session/{senderId}/stop":               "Stop",
	"POST /api/whatsapp/session/{senderId}/logout":             "Logout",
	"POST /api/whatsapp/session/{senderId}/messages":           "Send",
	"POST /api/whatsapp/session/{senderId}/messages/{id}/read": "MarkRead",
	"POST /api/whatsapp/test/session/{senderId}/{action}":      "Test",
	"GET /api/whatsapp/webhooks/deliveries":                    "Deliveries",
	"POST /api/whatsapp/webhooks/deliveries/retry":             "RetryDeadDeliveries",
	"POST /api/whatsapp/webhooks/deliveries/{id}/retry":        "RetryDelivery",
	"GET /api/whatsapp/test/session/{senderId}/sent":           "TestSent",
}

// Every route the API describes has a client method, and no method names a
// route the API no longer has.
func TestEveryRouteHasAMethod(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(apihttp.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var described, covered []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				described = append(described, strings.ToUpper(method)+" "+path)
			}
		}
	}
	for r := range routes {
		covered = append(covered, r)
	}
	sort.Strings(described)
	sort.Strings(covered)
	if !slices.Equal(described, covered) {
		t.Errorf("routes described:\n%v\ncovered by the client:\n%v", described, covered)
	}
}

// The client drives a real service through a whole life: create, QR,
// pairing by the test routes (scan, then by phone code), status and fleet,
// a drop and a ban, stop, restore, logout and delete; errors carry the
// API's status and code and match the sessions sentinels.
func TestClientAgainstTheService(t *testing.T) {
	svc := e2e.Start(t, e2e.Config(t.TempDir(), nil))
	c := svc.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	e2e.WaitFor(t, e2e.Wait, "ready", func() (bool, string) {
		ok, err := c.Ready(ctx)
		return ok, fmt.Sprint(ok, err)
	}, svc.Logs)
	if doc, err := c.OpenAPI(ctx); err != nil || !json.Valid(doc) {
		t.Errorf("openapi: %v", err)
	}
	if info, err := c.Info(ctx); err != nil || !info.TestMode {
		t.Errorf("info in test mode: %+v %v", info, err)
	}

	// Errors: a session that does not exist, a wrong key, a bad request.
	_, err := c.Status(ctx, "nobody")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Code != "not_found" || !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("status of an unknown session: %#v", err)
	}
	if errors.Is(err, sessions.ErrWrongState) {
		t.Error("a 404 matches ErrWrongState")
	}
	_, err = client.New(svc.Base, "wrong-key-0123456789abcdefgh").Fleet(ctx)
	if !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Errorf("fleet with a wrong key: %v", err)
	}
	if _, err := c.Status(ctx, "bad id!"); !errors.Is(err, sessions.ErrInvalid) {
		t.Errorf("status of a bad id: %v", err)
	}

	// Pairing by QR code, through the test route.
	st, created, err := c.Create(ctx, "alice")
	if err != nil || !created || st.SenderID != "alice" {
		t.Fatalf("create: %v %v %v", st, created, err)
	}
	e2e.WaitFor(t, e2e.Wait, "a QR code", func() (bool, string) {
		qr, err := c.QR(ctx, "alice")
		return err == nil && qr.Code != "" && !qr.ExpiresAt.IsZero(), fmt.Sprint(err)
	}, svc.Logs)
	if res, err := c.Test(ctx, "alice", "scan", sessions.TestParams{}); err != nil || res.Action != "scan" || res.Done == "" {
		t.Fatalf("scan: %v %v", res, err)
	}
	alice := svc.WaitState("alice", sessions.StateConnected, e2e.Wait)
	if _, err := c.QR(ctx, "alice"); !errors.Is(err, sessions.ErrWrongState) {
		t.Errorf("QR of a connected session: %v", err)
	}
	if _, created, err := c.Create(ctx, "alice"); err != nil || created {
		t.Errorf("create of a running session: created %v, %v", created, err)
	}

	// Pairing by phone code.
	if _, _, err := c.Create(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	svc.WaitState("erin", sessions.StatePairing, e2e.Wait)
	if _, err := c.Test(ctx, "erin", "enter-code", sessions.TestParams{}); !errors.Is(err, sessions.ErrWrongState) {
		t.Errorf("enter-code before pair-phone: %v", err)
	}
	code, err := c.PairPhone(ctx, "erin", "+1 555 987 6543")
	if err != nil || len(code) != 9 {
		t.Fatalf("pair-phone: %q %v", code, err)
	}
	if _, err := c.Test(ctx, "erin", "enter-code", sessions.TestParams{}); err != nil {
		t.Fatalf("enter-code: %v", err)
	}
	if erin := svc.WaitState("erin", sessions.StateConnected, e2e.Wait); !strings.HasPrefix(e2e.JID(erin), "15559876543:") {
		t.Errorf("erin paired as %s", e2e.JID(erin))
	}

	// The network and WhatsApp act on a session.
	if _, err := c.Test(ctx, "alice", "drop", sessions.TestParams{}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	e2e.WaitFor(t, e2e.Wait, "alice connected again", func() (bool, string) {
		st, err := c.Status(ctx, "alice")
		return err == nil && st.State == sessions.StateConnected && st.Reconnects == alice.Reconnects+1, e2e.Show(st)
	}, svc.Logs)
	if _, err := c.Test(ctx, "alice", "ban", sessions.TestParams{}); !errors.Is(err, sessions.ErrInvalid) {
		t.Errorf("ban without seconds: %v", err)
	}
	if _, err := c.Test(ctx, "alice", "fly", sessions.TestParams{}); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("an unknown test action: %v", err)
	}
	if _, err := c.Test(ctx, "erin", "ban", sessions.TestParams{Seconds: 60}); err != nil {
		t.Fatalf("ban: %v", err)
	}
	svc.WaitState("erin", sessions.StateBanned, e2e.Wait)

	// Messages: what is refused before anything reaches WhatsApp.
	hi := sessions.SendRequest{To: "+15551234567", Text: "hi", IdempotencyKey: "k1"}
	if _, err := c.Send(ctx, "erin", hi); !errors.Is(err, sessions.ErrWrongState) {
		t.Errorf("send from a banned session: %v", err)
	}
	if _, err := c.Send(ctx, "alice", sessions.SendRequest{To: "nobody", Text: "hi"}); !errors.Is(err, sessions.ErrInvalid) {
		t.Errorf("send to a bad recipient: %v", err)
	}
	if err := c.MarkRead(ctx, "erin", sessions.ReadRequest{ID: "3EB0AB", Chat: "+15551234567"}); !errors.Is(err, sessions.ErrWrongState) {
		t.Errorf("mark read on a banned session: %v", err)
	}

	// The fleet, and /metrics parsed.
	f, err := c.Fleet(ctx)
	if err != nil || len(f.Sessions) != 2 || f.Counts[sessions.StateConnected] != 1 || f.Counts[sessions.StateBanned] != 1 {
		t.Errorf("fleet: %+v %v", f.Counts, err)
	}
	mf, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := client.Sample(mf, "whatsapp_session_state", "session", "alice", "state", "connected"); !ok || v != 1 {
		t.Errorf("whatsapp_session_state{alice,connected} = %v, %v", v, ok)
	}

	// Stop, restore, logout, delete.
	if st, err := c.Stop(ctx, "alice"); err != nil || st.State != sessions.StateStopped {
		t.Fatalf("stop: %v %v", e2e.Show(st), err)
	}
	if err := c.Restore(ctx, "alice"); err != nil {
		t.Fatalf("restore: %v", err)
	}
	svc.WaitState("alice", sessions.StateConnected, e2e.Wait)
	if err := c.Restore(ctx, "ghost"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("restore of an unknown session: %v", err)
	}
	if _, err := c.Logout(ctx, "alice"); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if err := c.Delete(ctx, "erin"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.Status(ctx, "erin"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("status after delete: %v", err)
	}
	if resp, err := c.Do(ctx, http.MethodHead, "/healthz", nil, nil); err != nil || resp.Status != 200 {
		t.Errorf("HEAD /healthz: %v %v", resp, err)
	}
}

// New's client closes an idle connection before the service would: a
// request sent on a connection the service is closing fails with EOF, and a
// POST without an Idempotency-Key is not retried.
func TestIdleConnectionsCloseBeforeTheServiceCloses(t *testing.T) {
	if client.IdleConnTimeout >= apihttp.IdleTimeout {
		t.Errorf("the client keeps idle connections %v, the service %v", client.IdleConnTimeout, apihttp.IdleTimeout)
	}
}
