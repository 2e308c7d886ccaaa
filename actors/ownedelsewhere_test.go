package actors_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// tells records Options.OwnedElsewhere's calls.
type tells struct {
	mu     sync.Mutex
	told   bool // what the hook answers
	errs   []string
	badArg bool
}

func (tl *tells) hook(id string, refusal error) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if id != "s1" || !errors.Is(refusal, sessions.ErrOwnedElsewhere) {
		tl.badArg = true
	}
	tl.errs = append(tl.errs, refusal.Error())
	return tl.told
}

func (tl *tells) count() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.errs)
}

// TestOwnedElsewhereTellsOncePerHolder: a session refused by another
// node's lease calls Options.OwnedElsewhere with the refusal; once the
// hook says it told the holder, later refusals by the same holder do not
// call it again (a waiting session retries every LeaseRetry), a new holder
// does; a hook that told no one is asked again at the next refusal.
func TestOwnedElsewhereTellsOncePerHolder(t *testing.T) {
	lt := newLeaseTable()
	a := lt.node(t, "a")
	tl := &tells{}
	b := newHarness(t, func(o *actors.Options) {
		o.Gate = lt.gate("b")
		o.LeaseRetry = 20 * time.Millisecond
		o.OwnedElsewhere = tl.hook
	})
	lt.mu.Lock()
	lt.nodes["b"] = b
	lt.mu.Unlock()

	a.connected("s1")
	b.stored("s1", true)
	b.restore()
	b.waitCode("s1", sessions.StateConnecting, sessions.CodeOwnedElsewhere)
	// Not told (the hook answers false): asked again at each refusal.
	eventually(t, func() bool { return tl.count() >= 3 }, "the hook asked at each refusal")

	tl.mu.Lock()
	tl.told = true
	before := len(tl.errs)
	tl.mu.Unlock()
	eventually(t, func() bool { return tl.count() > before }, "a call answered told")
	n := tl.count()
	time.Sleep(300 * time.Millisecond) // ~15 retries, none of which may call the hook
	if got := tl.count(); got != n {
		t.Fatalf("the hook was called %d more times for the same holder", got-n)
	}

	lt.set("s1", "c") // another node took the lease
	eventually(t, func() bool { return tl.count() == n+1 }, "the new holder told")

	lt.set("s1", "") // free: b takes it and connects
	b.waitState("s1", sessions.StateConnected)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.badArg {
		t.Fatal("the hook got another session's id or a refusal that is not owned_elsewhere")
	}
}
