package config_test

import (
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
)

func TestWeakAPIKeysAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, key, want string
	}{
		{"short", "0123456789abcdef0123", "too short (20 characters)"},
		{"one short of the minimum", strings.Repeat("ab", 11) + "c", "too short (23 characters)"},
		{"one character repeated", strings.Repeat("a", 40), "one character repeated"},
		{"one multibyte character repeated", strings.Repeat("é", 30), "one character repeated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("API_KEY", tc.key)
			_, err := config.Load()
			if err == nil || !strings.Contains(err.Error(), "API_KEY is "+tc.want) {
				t.Fatalf("API_KEY of %d characters: %v, want %q", len(tc.key), err, tc.want)
			}
			if strings.Contains(err.Error(), tc.key) {
				t.Error("the error shows the key")
			}
		})
	}
	for _, key := range []string{strings.Repeat("ab", 12), "0123456789abcdef01234567", "aaaaaaaaaaaaaaaaaaaaaaab"} {
		t.Setenv("API_KEY", key)
		if _, err := config.Load(); err != nil {
			t.Errorf("a %d-character key with two distinct characters refused: %v", len(key), err)
		}
	}
	t.Setenv("HTTP_MAX_CONNS", "-1")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "HTTP_MAX_CONNS") {
		t.Errorf("HTTP_MAX_CONNS=-1: %v", err)
	}
}
