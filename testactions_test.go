package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	apihttp "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
)

// The phone's user types the code pair-phone returned: enter-code does
// that, and the session pairs and connects. Without a code asked for it
// is refused with 409.
func TestEnterCodeCompletesAPhonePairing(t *testing.T) {
	svc := e2e.Start(t, e2e.Config(t.TempDir(), nil))
	svc.Call("POST", "/api/whatsapp/session/erin", "")
	svc.WaitState("erin", "pairing", e2e.Wait)
	eventuallyOK(t, func() bool { code, _ := svc.Call("GET", "/api/whatsapp/session/erin/qr", ""); return code == 200 })
	code, out := svc.Call("POST", "/api/whatsapp/test/session/erin/enter-code", "")
	if e, _ := out["error"].(map[string]any); code != 409 || e["code"] != "wrong_state" || !strings.Contains(e["message"].(string), "pair-phone") {
		t.Errorf("enter-code before pair-phone: %d %v", code, out)
	}
	code, out = svc.Call("POST", "/api/whatsapp/session/erin/pair-phone", `{"phone":"+1 555 987 6543"}`)
	if pc, _ := out["code"].(string); code != 200 || !regexp.MustCompile(`^[A-Z0-9]{4}-[A-Z0-9]{4}$`).MatchString(pc) {
		t.Fatalf("pair-phone: %d %v", code, out)
	}
	code, out = svc.Call("POST", "/api/whatsapp/test/session/erin/enter-code", "")
	if code != 200 || out["action"] != "enter-code" {
		t.Fatalf("enter-code: %d %v", code, out)
	}
	st := svc.WaitState("erin", "connected", e2e.Wait)
	if jid := e2e.JID(st); !strings.HasPrefix(jid, "15559876543:") {
		t.Errorf("paired as %v, want the phone's number", st.JID)
	}
}

// The OpenAPI document lists the test actions the driver knows.
func TestOpenAPIListsEveryTestAction(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				TestAction struct {
					Enum []string `json:"enum"`
				} `json:"TestAction"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(apihttp.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.Components.Schemas.TestAction.Enum; !slices.Equal(got, testmode.Actions) {
		t.Errorf("OpenAPI TestAction enum %v, driver %v", got, testmode.Actions)
	}
}

// A session whose status says pairing has a QR code to fetch: the
// walkthrough's GET .../qr right after it must not answer 409.
func TestPairingStateAlwaysHasAQRCode(t *testing.T) {
	svc := e2e.Start(t, e2e.Config(t.TempDir(), nil))
	for i := range 8 {
		id := "qr" + string(rune('a'+i))
		svc.Call("POST", "/api/whatsapp/session/"+id, "")
		svc.WaitState(id, "pairing", e2e.Wait)
		if code, out := svc.Call("GET", "/api/whatsapp/session/"+id+"/qr", ""); code != 200 {
			t.Errorf("%s is pairing but its QR route answers %d %v", id, code, out)
		}
	}
}

// The contact actions through the API: a contact's message is accepted
// with its ID, sent lists what contacts decrypted (nothing yet), and bad
// bodies, numbers not on WhatsApp and unknown messages get the API's
// errors.
func TestContactTestActions(t *testing.T) {
	svc := e2e.Start(t, e2e.Config(t.TempDir(), nil))
	svc.Call("POST", "/api/whatsapp/session/carol", "")
	svc.WaitState("carol", "pairing", e2e.Wait)
	eventuallyOK(t, func() bool { code, _ := svc.Call("GET", "/api/whatsapp/session/carol/qr", ""); return code == 200 })
	if code, out := svc.Call("POST", "/api/whatsapp/test/session/carol/scan", ""); code != 200 {
		t.Fatalf("scan: %d %v", code, out)
	}
	svc.WaitState("carol", "connected", e2e.Wait)

	code, out := svc.Call("POST", "/api/whatsapp/test/session/carol/receive", `{"from":"+15557770030","text":"hi carol"}`)
	if id, _ := out["id"].(string); code != 200 || out["action"] != "receive" || id == "" {
		t.Errorf("receive: %d %v", code, out)
	}
	code, out = svc.Call("GET", "/api/whatsapp/test/session/carol/sent", "")
	if msgs, ok := out["messages"].([]any); code != 200 || !ok || len(msgs) != 0 {
		t.Errorf("sent: %d %v, want no messages", code, out)
	}
	for _, tt := range []struct {
		action, body string
		status       int
		code         string
	}{
		{"receive", `{"from":"+15557770030"}`, 400, "bad_request"},
		{"receive", `{"from":"+9995550000","text":"x"}`, 404, "not_found"},
		{"read", `{}`, 400, "bad_request"},
		{"read", `{"id":"3ANOSUCHMESSAGE"}`, 404, "not_found"},
	} {
		code, out := svc.Call("POST", "/api/whatsapp/test/session/carol/"+tt.action, tt.body)
		if e, _ := out["error"].(map[string]any); code != tt.status || e["code"] != tt.code {
			t.Errorf("%s %s: %d %v, want %d %s", tt.action, tt.body, code, out, tt.status, tt.code)
		}
	}
	if code, _ := svc.Call("GET", "/api/whatsapp/test/session/nobody/sent", ""); code != 404 {
		t.Errorf("sent of an unknown session: %d, want 404", code)
	}
}
