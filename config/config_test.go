package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
)

// loadWith sets the variables in env for the test and loads the
// configuration.
func loadWith(t *testing.T, env map[string]string) (config.Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	return config.Load()
}

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
	c, err := loadWith(t, map[string]string{"NODE_ENV": "test"})
	if err != nil || !c.TestMode {
		t.Fatalf("NODE_ENV=test: test mode %v, %v", c.TestMode, err)
	}
}

func TestBadValuesAreAllReported(t *testing.T) {
	_, err := loadWith(t, map[string]string{
		"API_KEY":             "short",
		"BACKOFF_MIN":         "10m",
		"BACKOFF_MAX":         "1m",
		"LOG_LEVEL":           "loud",
		"RESTORE_CONCURRENCY": "0",
	})
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

// A value that does not parse is refused in one sentence that names the
// variable and the form it takes, without the parser's internals.
func TestUnparsableValues(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{"RESTORE_CONCURRENCY", "abc", `RESTORE_CONCURRENCY="abc" is not a whole number`},
		{"CONNECT_BURST", "1.5", `CONNECT_BURST="1.5" is not a whole number`},
		{"CONNECT_RATE", "fast", `CONNECT_RATE="fast" is not a number`},
		{"BACKOFF_MIN", "5", `BACKOFF_MIN="5" is not a duration: write a number with a unit, such as 500ms, 30s, 5m or 1h`},
		{"REQUEST_TIMEOUT", "ten seconds", `REQUEST_TIMEOUT="ten seconds" is not a duration`},
		{"AUTO_RESTORE_SESSIONS", "maybe", `AUTO_RESTORE_SESSIONS="maybe" is not a boolean: write true or false`},
		{"WHATSAPP_TEST_MODE", "yes", `WHATSAPP_TEST_MODE="yes" is not a boolean`},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			_, err := loadWith(t, map[string]string{tc.key: tc.value})
			if err == nil {
				t.Fatalf("%s=%q accepted", tc.key, tc.value)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			for _, internal := range []string{"envconfig", "strconv", "Parse", "converting", "invalid syntax", "time: "} {
				if strings.Contains(msg, internal) {
					t.Errorf("error %q shows the parser's internals (%q)", msg, internal)
				}
			}
		})
	}
}

// Every bad value is reported in the same error.
func TestUnparsableValuesAreAllReported(t *testing.T) {
	_, err := loadWith(t, map[string]string{"RESTORE_CONCURRENCY": "x", "BACKOFF_MAX": "y"})
	if err == nil || !strings.Contains(err.Error(), "RESTORE_CONCURRENCY") || !strings.Contains(err.Error(), "BACKOFF_MAX") {
		t.Fatalf("two bad values: %v", err)
	}
}

// A variable set to the empty string means its default, as if unset.
func TestEmptyMeansDefault(t *testing.T) {
	def, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"AUTO_RESTORE_SESSIONS", "RESTORE_CONCURRENCY", "CONNECT_RATE", "BACKOFF_MIN", "SESSIONS_DIR",
		"HTTP_ADDR", "LOG_LEVEL", "WHATSAPP_TEST_MODE", "API_KEY", "METRICS_ADDR",
	} {
		t.Run(key, func(t *testing.T) {
			t.Setenv(key, "")
			c, err := config.Load()
			if err != nil {
				t.Fatalf("%s= refused: %v", key, err)
			}
			if c != def {
				t.Errorf("%s= gives %+v, want the defaults %+v", key, c, def)
			}
		})
	}
	t.Setenv("AUTO_RESTORE_SESSIONS", "")
	if c, _ := config.Load(); !c.AutoRestore {
		t.Error("AUTO_RESTORE_SESSIONS= turned the restore off; unset, it is on")
	}
	t.Setenv("AUTO_RESTORE_SESSIONS", "false")
	if c, _ := config.Load(); c.AutoRestore {
		t.Error("AUTO_RESTORE_SESSIONS=false left the restore on")
	}
}

// Values are read with their types.
func TestValuesAreRead(t *testing.T) {
	c, err := loadWith(t, map[string]string{
		"RESTORE_CONCURRENCY": "8",
		"CONNECT_RATE":        "2.5",
		"BACKOFF_MAX":         "90s",
		"WHATSAPP_TEST_MODE":  "true",
		"DEVICE_NAME":         "ops desk",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.RestoreConcurrency != 8 || c.ConnectRate != 2.5 || c.BackoffMax != 90*time.Second || !c.TestMode || c.DeviceName != "ops desk" {
		t.Errorf("read %+v", c)
	}
}

// TestStore: STORE picks the store; postgres needs a URL, from
// DATABASE_URL or a file; no error shows the URL.
func TestStore(t *testing.T) {
	const url = "postgres://u:s3cret-pw@db:5432/ws"
	file := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(file, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		err  string // "" for none
	}{
		{"default", nil, ""},
		{"postgres with url", map[string]string{"STORE": "postgres", "DATABASE_URL": url}, ""},
		{"postgres with file", map[string]string{"STORE": "postgres", "DATABASE_URL_FILE": file}, ""},
		{"postgres without url", map[string]string{"STORE": "postgres"}, "STORE=postgres needs DATABASE_URL"},
		{"unknown store", map[string]string{"STORE": "mysql"}, "STORE must be sqlite or postgres"},
		{"url without postgres", map[string]string{"DATABASE_URL": url}, "STORE is sqlite"},
		{"both", map[string]string{"STORE": "postgres", "DATABASE_URL": url, "DATABASE_URL_FILE": file}, "both set"},
		{"missing file", map[string]string{"STORE": "postgres", "DATABASE_URL_FILE": file + ".nope"}, "DATABASE_URL_FILE"},
		{"no conns", map[string]string{"STORE": "postgres", "DATABASE_URL": url, "DATABASE_MAX_CONNS": "0"}, "DATABASE_MAX_CONNS"},
		{"too few conns", map[string]string{"STORE": "postgres", "DATABASE_URL": url, "DATABASE_MAX_CONNS": "3"}, "DATABASE_MAX_CONNS must be at least 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadWith(t, tc.env)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Store == config.StorePostgres && c.DatabaseURL != url {
					t.Errorf("DatabaseURL not read")
				}
				if c.DatabaseMaxConns != 20 {
					t.Errorf("DatabaseMaxConns = %d, want 20", c.DatabaseMaxConns)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one saying %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}
