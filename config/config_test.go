package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
)

func TestDefaults(t *testing.T) {
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !c.AutoRestore || c.SessionsDir != ".wwebjs_auth" || c.HTTPAddr != ":8080" || c.TestMode ||
		c.BackoffMin != time.Second || c.BackoffMax != 5*time.Minute || c.StoreIdleTimeout != 2*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

func TestNodeEnvTestTurnsOnTestMode(t *testing.T) {
	t.Setenv("NODE_ENV", "test")
	c, err := config.Load()
	if err != nil || !c.TestMode {
		t.Fatalf("NODE_ENV=test: test mode %v, %v", c.TestMode, err)
	}
}

func TestBadValuesAreAllReported(t *testing.T) {
	t.Setenv("API_KEY", "short")
	t.Setenv("BACKOFF_MIN", "10m")
	t.Setenv("BACKOFF_MAX", "1m")
	t.Setenv("LOG_LEVEL", "loud")
	t.Setenv("RESTORE_CONCURRENCY", "0")
	_, err := config.Load()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"API_KEY is too short", "BACKOFF_MIN", "LOG_LEVEL", "RESTORE_CONCURRENCY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	t.Setenv("AUTO_RESTORE_SESSIONS", "maybe")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "AUTO_RESTORE_SESSIONS") {
		t.Errorf("unparsable boolean: %v", err)
	}
}
