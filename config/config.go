// Package config reads the service's whole configuration from the
// environment, in one place, into one typed and validated Config.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// MinAPIKeyLength is the shortest API key the service accepts. A shorter key
// is refused at start-up rather than silently weakening every route.
const MinAPIKeyLength = 16

// Config is everything the service can be told. Field tags name the
// environment variables; README.md lists each with its default.
type Config struct {
	// HTTPAddr is where the REST API, health and metrics listen.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8080"`
	// MetricsAddr, when set, serves /metrics on its own listener as well.
	MetricsAddr string `envconfig:"METRICS_ADDR"`
	// SessionsDir holds one directory per session (session-{senderId}).
	SessionsDir string `envconfig:"SESSIONS_DIR" default:".wwebjs_auth"`
	// APIKey guards every /api route. Empty: generated once into SessionsDir.
	APIKey string `envconfig:"API_KEY"`
	// AutoRestore restores every stored session at start-up.
	AutoRestore bool `envconfig:"AUTO_RESTORE_SESSIONS" default:"true"`

	// RestoreConcurrency bounds how many sessions open their store and dial
	// at the same time.
	RestoreConcurrency int `envconfig:"RESTORE_CONCURRENCY" default:"64"`
	// ConnectRate is the most connection attempts per second across all
	// sessions (restores and reconnects alike); ConnectBurst how many may
	// start at once.
	ConnectRate  float64 `envconfig:"CONNECT_RATE" default:"1000"`
	ConnectBurst int     `envconfig:"CONNECT_BURST" default:"100"`

	// StoreIdleTimeout closes a store's database connection once unused
	// this long. An open connection costs ~450 KiB and 3 file descriptors
	// (the store, its -wal and -shm); a resting store ~36 KiB and none, and
	// reopening one costs ~2 ms. Short, so that a restore of thousands of
	// sessions never holds thousands of connections at once.
	StoreIdleTimeout time.Duration `envconfig:"STORE_IDLE_TIMEOUT" default:"2s"`

	// BackoffMin and BackoffMax bound the delay between reconnect attempts;
	// the delay doubles from min to max with ±20 % jitter, and resets once a
	// session has stayed connected for BackoffReset.
	BackoffMin   time.Duration `envconfig:"BACKOFF_MIN" default:"1s"`
	BackoffMax   time.Duration `envconfig:"BACKOFF_MAX" default:"5m"`
	BackoffReset time.Duration `envconfig:"BACKOFF_RESET" default:"1m"`

	// RestartBudget is how many actor restarts (after a panic) a session may
	// have within RestartWindow before it is left failed.
	RestartBudget int           `envconfig:"RESTART_BUDGET" default:"5"`
	RestartWindow time.Duration `envconfig:"RESTART_WINDOW" default:"1m"`

	// RequestTimeout bounds how long an API request waits for an actor.
	RequestTimeout time.Duration `envconfig:"REQUEST_TIMEOUT" default:"10s"`
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"20s"`

	// DeviceName is the name the phone shows under "Linked devices".
	DeviceName string `envconfig:"DEVICE_NAME" default:"whatsapp-sessions"`

	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"text"`

	// TestMode points every client at a local fake WhatsApp server instead
	// of WhatsApp. NODE_ENV=test turns it on too, as in the source document.
	TestMode bool   `envconfig:"WHATSAPP_TEST_MODE" default:"false"`
	NodeEnv  string `envconfig:"NODE_ENV"`
	// FakeServerAddr, in test mode, is an external fake server (cmd/fakewa)
	// to use instead of starting one in-process; FakeControlURL is its
	// control API, and FakeCAFile the PEM file of the CA it wrote (its
	// -ca-out), the only one the WhatsApp client trusts then.
	FakeServerAddr string `envconfig:"FAKE_WA_ADDR"`
	FakeControlURL string `envconfig:"FAKE_WA_CONTROL_URL"`
	FakeCAFile     string `envconfig:"FAKE_WA_CA_FILE"`
}

// Load reads the environment into a Config and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return Config{}, fmt.Errorf("read environment: %w", err)
	}
	if strings.EqualFold(c.NodeEnv, "test") {
		c.TestMode = true
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports every setting that cannot work, all at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HTTPAddr == "" {
		bad("HTTP_ADDR must not be empty")
	}
	if strings.TrimSpace(c.SessionsDir) == "" {
		bad("SESSIONS_DIR must not be empty")
	}
	if c.APIKey != "" && len(c.APIKey) < MinAPIKeyLength {
		bad("API_KEY is too short (%d characters): use at least %d random characters, or unset it to have one generated", len(c.APIKey), MinAPIKeyLength)
	}
	if c.RestoreConcurrency < 1 {
		bad("RESTORE_CONCURRENCY must be at least 1, got %d", c.RestoreConcurrency)
	}
	if c.ConnectRate <= 0 {
		bad("CONNECT_RATE must be positive, got %v", c.ConnectRate)
	}
	if c.ConnectBurst < 1 {
		bad("CONNECT_BURST must be at least 1, got %d", c.ConnectBurst)
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		bad("BACKOFF_MIN (%v) must be positive and at most BACKOFF_MAX (%v)", c.BackoffMin, c.BackoffMax)
	}
	if c.StoreIdleTimeout <= 0 {
		bad("STORE_IDLE_TIMEOUT must be positive, got %v", c.StoreIdleTimeout)
	}
	if c.BackoffReset <= 0 {
		bad("BACKOFF_RESET must be positive, got %v", c.BackoffReset)
	}
	if c.RestartBudget < 0 {
		bad("RESTART_BUDGET must not be negative, got %d", c.RestartBudget)
	}
	if c.RestartWindow <= 0 {
		bad("RESTART_WINDOW must be positive, got %v", c.RestartWindow)
	}
	if c.RequestTimeout <= 0 {
		bad("REQUEST_TIMEOUT must be positive, got %v", c.RequestTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT must be positive, got %v", c.ShutdownTimeout)
	}
	if strings.TrimSpace(c.DeviceName) == "" {
		bad("DEVICE_NAME must not be empty")
	}
	if _, err := c.Level(); err != nil {
		bad("%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT must be text or json, got %q", c.LogFormat)
	}
	if (c.FakeServerAddr == "") != (c.FakeControlURL == "") || (c.FakeServerAddr == "") != (c.FakeCAFile == "") {
		bad("FAKE_WA_ADDR, FAKE_WA_CONTROL_URL and FAKE_WA_CA_FILE go together (the CA file is what cmd/fakewa -ca-out wrote)")
	}
	if c.FakeServerAddr != "" && !c.TestMode {
		bad("FAKE_WA_ADDR needs WHATSAPP_TEST_MODE=true")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}

// Level is LogLevel as a slog level.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return l, nil
}
