package faults_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// startService runs the service binary against f on dir (internal/e2e's
// test configuration, a little slower to connect, with a larger restart
// budget) and waits until it listens; extra "NAME=value" entries win. The
// process is killed and waited for when the test ends, whatever happened.
func startService(t *testing.T, f *fake, dir string, extra ...string) *e2e.Service {
	t.Helper()
	cfg := e2e.Config(dir, f.Fake)
	cfg.ConnectRate, cfg.ConnectBurst, cfg.RestartBudget, cfg.DeviceName = 500, 50, 5, "faults"
	return e2e.StartProcess(t, serviceBin, cfg, extra...)
}

// byID is a fleet's statuses by senderId.
func byID(f sessions.Fleet) map[string]sessions.Status {
	out := make(map[string]sessions.Status, len(f.Sessions))
	for _, s := range f.Sessions {
		out[s.SenderID] = s
	}
	return out
}

func sprint(a ...any) string { return strings.TrimSpace(fmt.Sprintln(a...)) }
