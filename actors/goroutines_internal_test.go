package actors

import (
	"testing"
	"time"
)

// TestGoroutinesMayGrowWhileWaitedFor: a goroutine started after the count
// reached zero, while a waiter still holds the idle channel, neither
// panics (as a sync.WaitGroup does) nor leaves the waiter hanging; the
// next idle channel waits for the new one.
func TestGoroutinesMayGrowWhileWaitedFor(t *testing.T) {
	var g goroutines
	select {
	case <-g.idle():
	default:
		t.Fatal("idle is not closed with nothing running")
	}
	g.add()
	first := g.idle()
	g.done()
	g.add() // a new one while the first waiter has not looked yet
	select {
	case <-first:
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter from before the count reached zero was not woken")
	}
	second := g.idle()
	select {
	case <-second:
		t.Fatal("idle is closed while a goroutine runs")
	default:
	}
	g.done()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("idle was not closed once the last goroutine ended")
	}
}
