package sessions_test

import (
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Each state asks the operator for what DESIGN.md's table says, and every
// state in the list has an answer.
func TestUserActionFollowsTheState(t *testing.T) {
	want := map[sessions.State]sessions.UserAction{
		sessions.StateRestoring:    sessions.ActionWait,
		sessions.StateConnecting:   sessions.ActionWait,
		sessions.StatePairing:      sessions.ActionScanQR,
		sessions.StateConnected:    sessions.ActionNone,
		sessions.StateReconnecting: sessions.ActionWait,
		sessions.StateNeedsPairing: sessions.ActionScanQR,
		sessions.StateBanned:       sessions.ActionWait,
		sessions.StateConflict:     sessions.ActionRestore,
		sessions.StateFailed:       sessions.ActionRestore,
		sessions.StateStopped:      sessions.ActionNone,
	}
	if len(want) != len(sessions.States) {
		t.Fatalf("the table covers %d states, sessions.States has %d", len(want), len(sessions.States))
	}
	for _, s := range sessions.States {
		if got := s.UserAction(); got != want[s] {
			t.Errorf("%s.UserAction() = %s, want %s", s, got, want[s])
		}
	}
}
