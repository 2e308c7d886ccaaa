package fakeserver_test

import (
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// SeedFingerprint is the same every time for the same code: a template
// checked against it is seeded again only when seeding changed.
func TestSeedFingerprintIsStable(t *testing.T) {
	first := fakeserver.SeedFingerprint()
	for range 3 {
		if got := fakeserver.SeedFingerprint(); got != first {
			t.Fatalf("SeedFingerprint gave %s, then %s", first, got)
		}
	}
	if len(first) != 16 {
		t.Errorf("SeedFingerprint %q, want 16 hex digits", first)
	}
}
