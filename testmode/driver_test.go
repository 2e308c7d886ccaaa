package testmode_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// phone is the session as the driver inspects it: a hand-written fake of
// the manager.
type phone struct {
	insp sessions.Inspection
	err  error
}

func (p phone) Inspect(context.Context, string) (sessions.Inspection, error) { return p.insp, p.err }
func (p phone) Status(context.Context, string) (sessions.Status, error) {
	return sessions.Status{State: p.insp.State}, p.err
}
func (p phone) Panic(context.Context, string) error { return p.err }

// The driver answers with the domain's errors, which the API's one table
// maps to statuses: a bad parameter is ErrInvalid, an unknown action
// ErrNotFound, a session with nothing to act on ErrWrongState, and a fake
// server that does not answer ErrWhatsApp.
func TestDriverReturnsDomainErrors(t *testing.T) {
	defer goleak.VerifyNone(t)
	fake, err := fakeserver.Start(fakeserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	gone := httptest.NewServer(nil)
	gone.Close()

	paired := sessions.Inspection{State: sessions.StateConnected, JID: "15550001234:3@s.whatsapp.net"}
	unpaired := sessions.Inspection{State: sessions.StateNeedsPairing}
	tests := []struct {
		name    string
		phone   phone
		control fakeserver.Control
		action  string
		params  sessions.TestParams
		want    error
		msg     string
	}{
		{name: "drop", phone: phone{insp: paired}, control: fake, action: "drop"},
		{name: "unknown action", phone: phone{insp: paired}, control: fake, action: "fly", want: sessions.ErrNotFound,
			msg: "unknown test action: use scan, enter-code, unlink, ban, drop, replace, outdated, receive, read or panic"},
		{name: "ban without seconds", phone: phone{insp: paired}, control: fake, action: "ban", want: sessions.ErrInvalid,
			msg: `ban needs {"seconds": N} with N from 1 to 86400`},
		{name: "ban too long", phone: phone{insp: paired}, control: fake, action: "ban", params: sessions.TestParams{Seconds: 86401}, want: sessions.ErrInvalid},
		{name: "unlink unpaired", phone: phone{insp: unpaired}, control: fake, action: "unlink", want: sessions.ErrWrongState},
		{name: "enter-code without a code", phone: phone{insp: unpaired}, control: fake, action: "enter-code", want: sessions.ErrWrongState},
		{name: "scan with nothing to scan", phone: phone{insp: unpaired}, control: fake, action: "scan", want: sessions.ErrWrongState},
		{name: "unknown session", phone: phone{err: sessions.ErrNotFound}, control: fake, action: "drop", want: sessions.ErrNotFound},
		{name: "fake server down", phone: phone{insp: paired}, control: fakeserver.NewRemote(gone.URL, nil), action: "drop", want: sessions.ErrWhatsApp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testmode.New(tt.phone, tt.control)
			defer d.Close()
			out, err := d.Act(context.Background(), "alice", tt.action, tt.params)
			if tt.want == nil {
				if err != nil || out == nil {
					t.Fatalf("Act: %v, %v; want a result", out, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Act: %v, want %v", err, tt.want)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("message %q, want %q", err.Error(), tt.msg)
			}
		})
	}
}
