package actors

import (
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// move is one state change a session actor can make.
type move struct{ from, to sessions.State }

// codeMove is a state change the session actor's code makes, and where.
type codeMove struct {
	move
	where string
}

// codeMoves walks every state change the session actor's code makes.
func codeMoves() []codeMove {
	moves := []codeMove{
		{move{"", sessions.StateRestoring}, "start: a new actor"},
		{move{sessions.StateRestoring, sessions.StateConnecting}, "onDialing"},
		{move{sessions.StateRestoring, sessions.StateNeedsPairing}, "onDialed: no store, or an unpaired one outside pair mode"},
		{move{sessions.StateRestoring, sessions.StateFailed}, "onDialed: the store did not open"},
		{move{sessions.StateConnecting, sessions.StateReconnecting}, "onDialed: the dial failed"},
		{move{sessions.StatePairing, sessions.StateReconnecting}, "onDialed: StartPairing failed after a QR code"},
		{move{sessions.StateConnecting, sessions.StateConnected}, "Connected"},
		{move{sessions.StateConnecting, sessions.StatePairing}, "QRCode"},
		{move{sessions.StatePairing, sessions.StateConnecting}, "PairSuccess"},
		{move{sessions.StatePairing, sessions.StateNeedsPairing}, "PairingEnded"},
		{move{sessions.StateConnecting, sessions.StateNeedsPairing}, "PairingEnded before the first code"},
		{move{sessions.StateReconnecting, sessions.StateConnecting}, "onRetryDue"},
		{move{sessions.StateBanned, sessions.StateConnecting}, "onRetryDue after a ban"},
		{move{sessions.StateReconnecting, sessions.StateReconnecting}, "a second failure"},
	}
	for _, s := range []sessions.State{sessions.StateNeedsPairing, sessions.StateFailed, sessions.StateConflict} {
		moves = append(moves, codeMove{move{s, sessions.StateRestoring}, "onStart, onRestart: the operator starts it over"})
	}
	for d, v := range verdicts {
		// A retry follows a failure while connected or logging in; a
		// verdict that ends the login can arrive wherever a client is
		// open.
		from := []sessions.State{sessions.StateConnecting, sessions.StatePairing,
			sessions.StateConnected, sessions.StateReconnecting, sessions.StateBanned}
		switch {
		case d == lostConnection:
			from = []sessions.State{sessions.StateConnected, sessions.StateConnecting}
		case d == loginFailed:
			from = []sessions.State{sessions.StateConnected, sessions.StateConnecting, sessions.StatePairing}
		case d == operatorLogout:
			from = []sessions.State{sessions.StateConnected}
		}
		for _, f := range from {
			moves = append(moves, codeMove{move{f, v.state}, "verdict " + string(v.code)})
		}
	}
	return moves
}

func TestTransitionsAllowEveryMoveTheCodeMakes(t *testing.T) {
	for _, m := range codeMoves() {
		if !allowed(m.from, m.to) {
			t.Errorf("%s: %q -> %q is not in the transitions table", m.where, m.from, m.to)
		}
	}
}

func TestTransitionsCoverEveryState(t *testing.T) {
	for _, s := range sessions.States {
		if _, ok := transitions[s]; !ok && s != sessions.StateStopped {
			t.Errorf("state %s has no row in the transitions table", s)
		}
		for _, to := range transitions[s] {
			if to == sessions.StateStopped {
				t.Errorf("%s -> stopped: only the manager stops a session", s)
			}
		}
	}
}

func TestSetRefusesAMoveTheTableForbids(t *testing.T) {
	for _, m := range []move{
		{"", sessions.StateConnected},
		{sessions.StateNeedsPairing, sessions.StateConnected},
		{sessions.StateConflict, sessions.StateConnecting},
		{sessions.StateFailed, sessions.StateReconnecting},
		{sessions.StateRestoring, sessions.StateConnected},
		{sessions.StateBanned, sessions.StateReconnecting},
	} {
		t.Run(string(m.from)+"->"+string(m.to), func(t *testing.T) {
			s := newSession("s1", &deps{log: slog.New(slog.DiscardHandler)}, nil, modeRestore, false)
			s.st.State = m.from
			if s.enter(m.to, nil) {
				t.Fatalf("move allowed")
			}
			if s.st.State != m.from {
				t.Errorf("state is %q after a refused move, want %q", s.st.State, m.from)
			}
			if n := s.deps.refused.Load(); n != 1 {
				t.Errorf("refused counted %d times, want 1", n)
			}
		})
	}
}

func TestSetSetsWhatFollowsFromTheState(t *testing.T) {
	s := newSession("s1", &deps{log: slog.New(slog.DiscardHandler)}, nil, modeRestore, false)
	for _, to := range []sessions.State{sessions.StateRestoring, sessions.StateConnecting, sessions.StateConnected} {
		if !s.enter(to, nil) {
			t.Fatalf("move to %s refused", to)
		}
		if s.st.UserAction != to.UserAction() || s.st.Connected != (to == sessions.StateConnected) {
			t.Errorf("in %s: %+v", to, s.st)
		}
	}
}

func TestVerdictsCarryTheirDetail(t *testing.T) {
	got := verdicts[loggedOut].info("device removed")
	if got.Code != sessions.CodeLoggedOut || got.Message != "WhatsApp ended this login (device removed): create the session again to pair it" {
		t.Errorf("logged out: %+v", got)
	}
	if got := verdicts[replaced].info(""); got.Message == "" || got.Code != sessions.CodeStreamReplaced {
		t.Errorf("replaced: %+v", got)
	}
	for d, v := range verdicts {
		if !allowed(sessions.StateConnected, v.state) {
			t.Errorf("verdict %d: connected -> %s not allowed", d, v.state)
		}
	}
}

func TestPhaseMoves(t *testing.T) {
	allowedMoves := []struct{ from, to phase }{
		{phaseIdle, phaseRunning}, {phaseIdle, phaseRemoving},
		{phaseRunning, phaseStopping}, {phaseRunning, phaseDeleting}, {phaseRunning, phaseShuttingDown}, {phaseRunning, phaseIdle},
		{phaseStopping, phaseDeleting}, {phaseStopping, phaseIdle},
		{phaseDeleting, phaseRemoving}, {phaseRemoving, phaseIdle}, {phaseShuttingDown, phaseIdle},
	}
	for _, m := range allowedMoves {
		e := &entry{phase: m.from}
		if err := e.move(m.to); err != nil || e.phase != m.to {
			t.Errorf("%s -> %s: %v", m.from, m.to, err)
		}
	}
	for _, m := range []struct{ from, to phase }{
		{phaseIdle, phaseStopping}, {phaseDeleting, phaseRunning}, {phaseRemoving, phaseRunning},
		{phaseShuttingDown, phaseRunning}, {phaseStopping, phaseRunning}, {phaseIdle, phaseDeleting},
	} {
		e := &entry{phase: m.from}
		if err := e.move(m.to); err == nil || e.phase != m.from {
			t.Errorf("%s -> %s allowed (phase now %s)", m.from, m.to, e.phase)
		}
	}
}

// TestTransitionsMatchTheREADME reads the README's table of session states:
// each row's "leaves by" column names exactly the moves transitions allows
// from that state ("a verdict" standing for every verdict's state).
func TestTransitionsMatchTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var verdictStates []sessions.State
	for _, v := range verdicts {
		if v.state != sessions.StateReconnecting && !slices.Contains(verdictStates, v.state) {
			verdictStates = append(verdictStates, v.state)
		}
	}
	quoted := regexp.MustCompile("`([a-z_]+)`")
	rows := 0
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 {
			continue
		}
		m := quoted.FindStringSubmatch(cells[1])
		if m == nil || !slices.Contains(sessions.States, sessions.State(m[1])) || m[1] == string(sessions.StateStopped) {
			continue
		}
		rows++
		from := sessions.State(m[1])
		var want []sessions.State
		for _, q := range quoted.FindAllStringSubmatch(cells[3], -1) {
			want = append(want, sessions.State(q[1]))
		}
		if strings.Contains(cells[3], "a verdict") {
			for _, s := range verdictStates {
				if s != from && !slices.Contains(want, s) {
					want = append(want, s)
				}
			}
		}
		got := slices.Clone(transitions[from])
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the README says it leaves by %v, the table allows %v", from, want, got)
		}
	}
	if rows != len(sessions.States)-1 {
		t.Errorf("read %d rows of the README's state table, want %d", rows, len(sessions.States)-1)
	}
}
