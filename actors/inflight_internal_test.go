package actors

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// The manager forgets a forwarded command once the actor reports reading
// it, oldest first; a report from an actor since replaced changes nothing;
// and what it forgets leaves no reference behind in the slice's array.
func TestReadCommandsAreForgotten(t *testing.T) {
	pid := actor.NewPID("nonhost", "session-a")
	e := &entry{pid: pid}
	m := &manager{sessions: map[string]*entry{"a": e}, byPID: map[string]string{pid.Id: "a"}, requestTimeout: time.Minute}
	var failed []int
	for i := range 3 {
		e.inflight = append(e.inflight, inflightCmd{fail: func(error) { failed = append(failed, i) }, seq: e.forwarded, at: time.Now()})
		e.forwarded++
	}
	array := e.inflight[:cap(e.inflight)]

	m.onCmdRead(cmdRead{pid: actor.NewPID("nonhost", "session-a-before")})
	if len(e.inflight) != 3 {
		t.Fatalf("a replaced actor's report forgot commands: %d left", len(e.inflight))
	}
	m.onCmdRead(cmdRead{pid: pid})
	m.onCmdRead(cmdRead{pid: pid})
	if len(e.inflight) != 1 || e.inflight[0].seq != 2 {
		t.Fatalf("after two reads: %+v, want only the third command", e.inflight)
	}
	for i, c := range array[1:] {
		if c.fail != nil {
			t.Errorf("slot %d still holds a forgotten command's failer", i+1)
		}
	}
	m.failInflight("a", e)
	if len(failed) != 1 || failed[0] != 2 {
		t.Errorf("failed at the actor's end: %v, want only the unread one (2)", failed)
	}
	if e.forwarded != 0 || e.read != 0 {
		t.Errorf("counts not reset for the next actor: %d forwarded, %d read", e.forwarded, e.read)
	}
}
