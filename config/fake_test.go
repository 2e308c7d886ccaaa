package config_test

import (
	"maps"
	"strings"
	"testing"
)

// An external fake server needs its address, its control API and the CA
// that issued its TLS certificate, all three or none.
func TestExternalFakeServerSettingsGoTogether(t *testing.T) {
	all := map[string]string{
		"WHATSAPP_TEST_MODE":  "true",
		"FAKE_WA_ADDR":        "127.0.0.1:9400",
		"FAKE_WA_CONTROL_URL": "http://127.0.0.1:9401",
		"FAKE_WA_CA_FILE":     "/tmp/fakewa-ca.pem",
	}
	for _, missing := range []string{"", "FAKE_WA_ADDR", "FAKE_WA_CONTROL_URL", "FAKE_WA_CA_FILE"} {
		t.Run("without "+missing, func(t *testing.T) {
			env := maps.Clone(all)
			if missing != "" {
				env[missing] = ""
			}
			c, err := loadWith(t, env)
			if missing == "" {
				if err != nil || c.FakeCAFile != all["FAKE_WA_CA_FILE"] {
					t.Fatalf("Load = %+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "FAKE_WA_CA_FILE") {
				t.Errorf("Load without %s: %v, want an error naming FAKE_WA_CA_FILE", missing, err)
			}
		})
	}
}
