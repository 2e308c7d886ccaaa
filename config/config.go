// Package config reads the service's whole configuration from the
// environment, in one place, into one typed and validated Config.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// MinAPIKeyLength is the shortest API key the service accepts. A shorter key
// is refused at start-up rather than silently weakening every route.
const MinAPIKeyLength = 24

// CheckAPIKey says why key is too weak to guard the API (too short, or one
// character repeated), or returns nil. The reason never shows the key.
func CheckAPIKey(key string) error {
	if n := utf8.RuneCountInString(key); n < MinAPIKeyLength {
		return fmt.Errorf("too short (%d characters): use at least %d random characters, for example the output of openssl rand -hex 24", n, MinAPIKeyLength)
	}
	first, _ := utf8.DecodeRuneInString(key)
	if strings.Trim(key, string(first)) == "" {
		return errors.New("one character repeated: use random characters, for example the output of openssl rand -hex 24")
	}
	return nil
}

// MinDatabaseConns is the smallest DATABASE_MAX_CONNS: the webhook
// outbox's committer and the event relay each keep a connection of the
// pool, and the sessions' store work needs at least two more.
const MinDatabaseConns = 4

// Config is everything the service can be told. Field tags name the
// environment variables (envconfig's tag names, read by read in env.go);
// README.md lists each with its default.
type Config struct {
	// HTTPAddr is where the REST API, health and metrics listen.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8080"`
	// MetricsAddr, when set, serves /metrics there alone, without a key,
	// and no longer on HTTPAddr.
	MetricsAddr string `envconfig:"METRICS_ADDR"`
	// HTTPMaxConns caps the API listener's open connections; 0 sizes the
	// cap from the process's file descriptor limit (see http.MaxConns).
	HTTPMaxConns int `envconfig:"HTTP_MAX_CONNS" default:"0"`
	// SessionsDir holds one directory per session (session-{senderId}).
	SessionsDir string `envconfig:"SESSIONS_DIR" default:".wwebjs_auth"`
	// APIKey guards every /api route. Empty: generated once into SessionsDir.
	APIKey string `envconfig:"API_KEY"`
	// Store is where sessions' credentials live: sqlite (a whatsmeow
	// SQLite file per session under SessionsDir) or postgres (every
	// session's device in the database at DatabaseURL).
	Store string `envconfig:"STORE" default:"sqlite"`
	// DatabaseURL is the Postgres connection URL for STORE=postgres; Load
	// reads it from the file DatabaseURLFile names instead when that is
	// set (for secrets mounted as files). It holds a password: never log
	// it, nor put it in an error.
	DatabaseURL     string `envconfig:"DATABASE_URL"`
	DatabaseURLFile string `envconfig:"DATABASE_URL_FILE"`
	// DatabaseMaxConns caps the process's one Postgres pool. whatsmeow
	// borrows a connection per query or transaction, none per session.
	// At least MinDatabaseConns.
	DatabaseMaxConns int `envconfig:"DATABASE_MAX_CONNS" default:"20"`
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
	// sessions never holds thousands of connections at once. A store in
	// steady use keeps its connection up to twice this long (store's
	// lifetime).
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

	// WebhookURL is where events are delivered: one http(s) URL, or several
	// comma-separated; empty delivers none (events are still kept in the
	// outbox for WEBHOOK_KEEP). WebhookEvents, comma-separated, are the
	// event types delivered (empty: all). WebhookSecret signs deliveries
	// ("whsec_" and base64); empty: generated once into SessionsDir.
	WebhookURL    string `envconfig:"WEBHOOK_URL"`
	WebhookEvents string `envconfig:"WEBHOOK_EVENTS"`
	WebhookSecret string `envconfig:"WEBHOOK_SECRET"`
	// WebhookTimeout bounds one delivery attempt; WebhookRetryFor is how
	// long a delivery is retried (1 s doubling to 1 h) before it is dead;
	// WebhookKeep how long delivered events stay in the outbox.
	WebhookTimeout  time.Duration `envconfig:"WEBHOOK_TIMEOUT" default:"10s"`
	WebhookRetryFor time.Duration `envconfig:"WEBHOOK_RETRY_FOR" default:"72h"`
	WebhookKeep     time.Duration `envconfig:"WEBHOOK_KEEP" default:"24h"`
	// WebhookAllowPrivate lets webhook URLs reach loopback, private and
	// link-local addresses (for tests and receivers on the same network).
	WebhookAllowPrivate bool `envconfig:"WEBHOOK_ALLOW_PRIVATE" default:"false"`

	// Cluster is none (one process), etcd (membership in etcd at
	// EtcdEndpoints) or static (protoactor's automanaged provider over
	// ClusterPeers); see ClusterConfig in cluster.go.
	Cluster string `envconfig:"CLUSTER" default:"none"`
	// EtcdEndpoints, comma-separated URLs, is where CLUSTER=etcd keeps
	// the membership.
	EtcdEndpoints string `envconfig:"ETCD_ENDPOINTS"`
	// EtcdUsername and EtcdPassword authenticate to etcd (its auth
	// enabled); Load reads EtcdPassword from the file EtcdPasswordFile
	// names instead when that is set. Never logged, nor in an error.
	EtcdUsername     string `envconfig:"ETCD_USERNAME"`
	EtcdPassword     string `envconfig:"ETCD_PASSWORD"`
	EtcdPasswordFile string `envconfig:"ETCD_PASSWORD_FILE"`
	// EtcdTLSCA, for https endpoints, is the PEM file of the CA that signs
	// etcd's certificate (default the system's roots); EtcdTLSCert and
	// EtcdTLSKey, both or neither, this node's client certificate for
	// etcd's client-certificate auth.
	EtcdTLSCA   string `envconfig:"ETCD_TLS_CA"`
	EtcdTLSCert string `envconfig:"ETCD_TLS_CERT"`
	EtcdTLSKey  string `envconfig:"ETCD_TLS_KEY"`
	// ClusterPeers, comma-separated host:port, are every node's
	// membership port for CLUSTER=static (this node's included);
	// ClusterStaticPort is the one this node serves (all interfaces,
	// plain HTTP, answering only its cluster address and kinds).
	ClusterPeers      string `envconfig:"CLUSTER_PEERS"`
	ClusterStaticPort int    `envconfig:"CLUSTER_STATIC_PORT" default:"6330"`
	// ClusterAddr is the host:port this node's protoactor remote listens
	// on; ClusterAdvertise what the other nodes dial (default ClusterAddr).
	ClusterAddr      string `envconfig:"CLUSTER_ADDR"`
	ClusterAdvertise string `envconfig:"CLUSTER_ADVERTISE"`
	// NodeName names this node in statuses, logs, metrics and the lease
	// table; default the host name.
	NodeName string `envconfig:"NODE_NAME"`
	// ClusterTLSCert, ClusterTLSKey and ClusterTLSCA are PEM files: this
	// node's certificate and key, and the CA every node's certificate is
	// signed by (mutual TLS between nodes). All three or none; none only
	// with ClusterInsecure, which says the nodes share a private network
	// that nothing else can reach.
	ClusterTLSCert  string `envconfig:"CLUSTER_TLS_CERT"`
	ClusterTLSKey   string `envconfig:"CLUSTER_TLS_KEY"`
	ClusterTLSCA    string `envconfig:"CLUSTER_TLS_CA"`
	ClusterInsecure bool   `envconfig:"CLUSTER_INSECURE" default:"false"`
	// LeaseTTL is how long a session's lease outlives its owner's last
	// renewal; a node renews every LeaseTTL/3 and disconnects its sessions
	// after LeaseTTL/2 without a successful renewal. Its default is
	// lease.DefaultTTL (config.TestClusterDefaults holds them equal).
	LeaseTTL time.Duration `envconfig:"LEASE_TTL" default:"10s"`
}

// WebhookURLs are WebhookURL's URLs, in order, without blanks.
func (c Config) WebhookURLs() []string {
	var out []string
	for _, u := range strings.Split(c.WebhookURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// WebhookEventTypes are WebhookEvents' types (every type when empty), or
// the reason one is not an event type.
func (c Config) WebhookEventTypes() ([]sessions.EventType, error) {
	var out []sessions.EventType
	for _, name := range strings.Split(c.WebhookEvents, ",") {
		t := sessions.EventType(strings.TrimSpace(name))
		switch {
		case t == "":
			continue
		case !slices.Contains(sessions.EventTypes, t):
			return nil, fmt.Errorf("WEBHOOK_EVENTS names %q, which is not an event type: use %s", t, joinTypes(sessions.EventTypes))
		case !slices.Contains(out, t):
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return sessions.EventTypes, nil
	}
	return out, nil
}

func joinTypes(types []sessions.EventType) string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// Load reads the environment into a Config and validates it. A variable
// set to the empty string means its default.
func Load() (Config, error) {
	c, err := read(os.LookupEnv)
	if err != nil {
		return Config{}, err
	}
	if strings.EqualFold(c.NodeEnv, "test") {
		c.TestMode = true
	}
	if err := c.readDatabaseURLFile(); err != nil {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	if err := c.readEtcdPasswordFile(); err != nil {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.ClusterAdvertise == "" {
		c.ClusterAdvertise = c.ClusterAddr
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Store values.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

// DatabaseURLFromEnv is DATABASE_URL, or else the content of the file
// DATABASE_URL_FILE names, as Load reads them; "" when neither is set.
// For commands that need only the database (migrate-store).
func DatabaseURLFromEnv() (string, error) {
	c := Config{DatabaseURL: os.Getenv("DATABASE_URL"), DatabaseURLFile: os.Getenv("DATABASE_URL_FILE")}
	err := c.readDatabaseURLFile()
	return c.DatabaseURL, err
}

// readDatabaseURLFile reads DatabaseURL from DatabaseURLFile, if set. An
// error names the file, never its content.
func (c *Config) readDatabaseURLFile() error {
	if c.DatabaseURLFile == "" {
		return nil
	}
	if c.DatabaseURL != "" {
		return errors.New("DATABASE_URL and DATABASE_URL_FILE are both set: set one")
	}
	b, err := os.ReadFile(c.DatabaseURLFile)
	if err != nil {
		return fmt.Errorf("DATABASE_URL_FILE: %w", err)
	}
	c.DatabaseURL = strings.TrimSpace(string(b))
	if c.DatabaseURL == "" {
		return fmt.Errorf("DATABASE_URL_FILE %s is empty", c.DatabaseURLFile)
	}
	return nil
}

// Validate reports every setting that cannot work, all at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HTTPAddr == "" {
		bad("HTTP_ADDR must not be empty")
	}
	if c.HTTPMaxConns < 0 {
		bad("HTTP_MAX_CONNS must be 0 (sized from the file descriptor limit) or positive, got %d", c.HTTPMaxConns)
	}
	if strings.TrimSpace(c.SessionsDir) == "" {
		bad("SESSIONS_DIR must not be empty")
	}
	switch c.Store {
	case StoreSQLite:
		if c.DatabaseURL != "" || c.DatabaseURLFile != "" {
			bad("DATABASE_URL is set but STORE is sqlite: set STORE=postgres to keep the sessions in Postgres, or unset DATABASE_URL")
		}
	case StorePostgres:
		if c.DatabaseURL == "" {
			bad("STORE=postgres needs DATABASE_URL (or DATABASE_URL_FILE, a file holding it)")
		}
	default:
		bad("STORE must be sqlite or postgres, got %q", c.Store)
	}
	if c.DatabaseMaxConns < MinDatabaseConns {
		bad("DATABASE_MAX_CONNS must be at least %d (the webhook outbox's committer and the event relay each keep one), got %d", MinDatabaseConns, c.DatabaseMaxConns)
	}
	if c.APIKey != "" {
		if err := CheckAPIKey(c.APIKey); err != nil {
			bad("API_KEY is %v, or unset it to have one generated", err)
		}
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
	errs = append(errs, c.validateWebhooks()...)
	errs = append(errs, c.validateCluster()...)
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}

// validateWebhooks reports every WEBHOOK_* setting that cannot work. No
// message shows the secret or a URL's query (it may hold a token).
func (c Config) validateWebhooks() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	urls := c.WebhookURLs()
	for i, u := range urls {
		if err := webhooks.CheckURL(u); err != nil {
			bad("WEBHOOK_URL's URL number %d %v", i+1, err)
		} else if j := slices.Index(urls, u); j < i {
			bad("WEBHOOK_URL's URL number %d repeats number %d", i+1, j+1)
		}
	}
	if _, err := c.WebhookEventTypes(); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookSecret != "" {
		if err := webhooks.CheckSecret(c.WebhookSecret); err != nil {
			bad("WEBHOOK_SECRET %v, or unset it to have one generated", err)
		}
	}
	if c.WebhookTimeout <= 0 {
		bad("WEBHOOK_TIMEOUT must be positive, got %v", c.WebhookTimeout)
	}
	if c.WebhookRetryFor <= 0 {
		bad("WEBHOOK_RETRY_FOR must be positive, got %v", c.WebhookRetryFor)
	}
	if c.WebhookKeep <= 0 {
		bad("WEBHOOK_KEEP must be positive, got %v", c.WebhookKeep)
	}
	return errs
}

// Level is LogLevel as a slog level.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return l, nil
}
