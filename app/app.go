// Package app builds the running service from a config.Config: the
// sessions directory, the webhook outbox, the fake WhatsApp server in test
// mode, the session manager, the test driver, the API and metrics
// listeners. Each part's teardown is registered next to its creation, so
// that a failure half-way and a normal shutdown release exactly what was
// made, in reverse order.
// main, the end-to-end harness (internal/e2e) and the bench all start the
// service through New.
package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/console"
	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	apihttp "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/idempotency"
	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/relay"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// App is the service, built and listening. Run serves until its context
// ends; Close tears everything down.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	mgr      *actors.Manager
	registry *prometheus.Registry
	apiKey   string
	addr     string
	webhooks *webhooks.Outbox
	events   *events.Hub
	ready    atomic.Bool
	serveErr chan error
	// dirReplaced hears from watchDir that SESSIONS_DIR was replaced.
	dirReplaced chan error

	// keeperCtx ends the lease keeper's renewals (STORE=postgres);
	// keeperDone waits for them.
	keeperCtx  context.Context
	keeperDone sync.WaitGroup
	// node is this process as a cluster member (CLUSTER set), once joined.
	node atomic.Pointer[cluster.Node]

	closers   []func(context.Context) error // in creation order; Close runs them backwards
	closeOnce sync.Once
	closeErr  error
}

// Run builds the service from cfg and serves until ctx ends, then shuts
// down in order: stop taking requests, stop every session (each
// disconnects and closes its store), then release the sessions directory.
func Run(ctx context.Context, cfg config.Config, logw io.Writer) error {
	a, err := New(cfg, logw)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New builds the service from cfg, logging to logw, and starts its
// listeners: the API answers (not ready) once New returns. On an error
// everything made so far is torn down.
func New(cfg config.Config, logw io.Writer) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log, err := newLogger(cfg, logw)
	if err != nil {
		return nil, err
	}
	a = &App{cfg: cfg, log: log, registry: prometheus.NewRegistry(), serveErr: make(chan error, 2), dirReplaced: make(chan error, 1)}
	defer func() {
		if err != nil {
			_ = a.Close()
			a = nil
		}
	}()
	whatsapp.SetDeviceName(cfg.DeviceName)

	dir, err := store.OpenDir(cfg.SessionsDir)
	if err != nil {
		return a, err
	}
	a.onClose(func(context.Context) error { return dir.Close() })
	stopWatch := watchDir(dir, dirCheckInterval, a.dirReplaced)
	a.onClose(func(context.Context) error { stopWatch(); return nil })
	if dir.GroupWritable() {
		log.Warn("SESSIONS_DIR is writable by its group: every member can plant or replace a session's credentials; run chmod g-w on it unless that is intended",
			"dir", dir.Root())
	}
	if a.apiKey, err = apiKey(cfg, dir, log); err != nil {
		return a, err
	}

	registry, stores, pg, err := a.openStore(dir)
	if err != nil {
		return a, err
	}

	reg := metricsRegisterer(cfg, a.registry)
	m := metrics.New(reg)
	// Before the manager, so that it closes after every session stopped
	// (a stopping session may still publish events).
	if err := a.openWebhooks(dir, pg, m); err != nil {
		return a, err
	}
	// The outbox keeps the sessions' events (messages, receipts, state
	// changes) until the webhooks have them; the live event stream gets
	// each once it is committed. Streams may take half the connections.
	maxConns := connCap(cfg, registry, log)
	a.events = events.New(events.Options{Observer: m, MaxClients: maxConns / 2})
	a.onClose(func(context.Context) error { a.events.Close(); return nil })
	sink := a.events.Feed(a.webhooks)
	if pg != nil {
		a.startRelay(pg, cfg.NodeName)
	}
	var idem *idempotency.Store
	if pg != nil {
		// Shared by the nodes: a retry answers the same wherever the
		// session is then.
		idem, err = idempotency.OpenPostgres(pg, idempotency.Options{Log: log})
	} else {
		idem, err = idempotency.Open(filepath.Join(dir.Root(), idempotency.File), idempotency.Options{Log: log})
	}
	if err != nil {
		return a, err
	}
	a.onClose(func(context.Context) error { return idem.Close() })
	var keeper *lease.Keeper
	if pg != nil {
		// Always with Postgres, even on one node: two processes on one
		// database must never both connect a session.
		if keeper, err = a.leaseKeeper(pg, m); err != nil {
			return a, err
		}
	}
	wopts := whatsapp.Options{Log: log, StoreIdleTimeout: cfg.StoreIdleTimeout, Sink: sink}
	var control fakeserver.Control
	if cfg.TestMode {
		if wopts.HTTPClient, control, err = a.startFake(filepath.Join(dir.Root(), fakeStateFile)); err != nil {
			return a, err
		}
	}
	mopts := actors.Options{
		Registry:           registry,
		Opener:             whatsapp.NewOpener(stores, wopts),
		Metrics:            m,
		Log:                log,
		Backoff:            actors.Backoff{Min: cfg.BackoffMin, Max: cfg.BackoffMax, Reset: cfg.BackoffReset},
		RestoreConcurrency: cfg.RestoreConcurrency,
		ConnectRate:        cfg.ConnectRate,
		ConnectBurst:       cfg.ConnectBurst,
		RestartBudget:      cfg.RestartBudget,
		RestartWindow:      cfg.RestartWindow,
		RequestTimeout:     cfg.RequestTimeout,
		Sink:               sink,
		Idempotency:        idem,
	}
	if keeper != nil {
		mopts.Gate = keeper
	}
	if cfg.Clustered() {
		mopts.OwnedElsewhere = a.ownedElsewhere
	}
	a.mgr, err = actors.NewManager(mopts)
	if err != nil {
		return a, err
	}
	a.onClose(func(ctx context.Context) error {
		if err := a.mgr.Shutdown(ctx); err != nil {
			log.Error("sessions did not all stop in time", "err", err)
			return err
		}
		log.Info("stopped: every session disconnected and its store closed")
		return nil
	})

	listeners := []string{"api"}
	if cfg.MetricsAddr != "" {
		listeners = append(listeners, "metrics")
	}
	conns := metrics.NewConns(reg, listeners...)
	metricsHandler := promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry})
	var (
		svc       sessions.Service   = a.mgr
		messenger sessions.Messenger = a.mgr
	)
	if keeper != nil {
		// The manager exists now: a lost lease reaches its session.
		a.runKeeper(keeper)
	}
	var driver *testmode.Driver
	if control != nil {
		driver = testmode.New(a.mgr, control)
		a.onClose(func(context.Context) error { driver.Close(); return nil })
	}
	var test sessions.TestDriver
	if driver != nil {
		test = driver
	}
	if cfg.Clustered() {
		deps := clusterDeps{Leases: clusterLeases{keeper}, Local: a.mgr, Registry: registry.(*pgstore.Registry)}
		if driver != nil {
			// A test action reaches the node hosting the session.
			deps.Local = testLocal{Manager: a.mgr, Driver: driver}
		}
		node, err := a.joinCluster(cfg, deps, reg)
		if err != nil {
			return a, err
		}
		a.node.Store(node)
		svc, messenger = node.Service(), node.Service()
		if driver != nil {
			test = node.Service()
		}
	}
	hopts := apihttp.Options{
		Sessions:   svc,
		Messenger:  messenger,
		APIKey:     a.apiKey,
		Log:        log,
		Observer:   m,
		OpenAPI:    apihttp.OpenAPI(),
		Ready:      a.ready.Load,
		Deliveries: a.webhooks,
		Console:    console.Handler(),
		Events:     a.events,
	}
	// /metrics names every session: on the API port it needs the key; with
	// METRICS_ADDR it is served there alone, and not on the API port.
	if cfg.MetricsAddr == "" {
		hopts.Metrics = metricsHandler
	}
	hopts.Test = test
	conns.SetMax("api", maxConns)
	limit := apihttp.NewConnLimit("api", maxConns, conns)
	srv := apihttp.NewServer(apihttp.NewHandler(hopts), log, limit)
	// Open streams end as the shutdown starts, instead of holding it.
	srv.RegisterOnShutdown(a.events.Close)
	if a.addr, err = a.serve(srv, limit, cfg.HTTPAddr, "HTTP_ADDR"); err != nil {
		return a, err
	}
	log.Info("listening", "addr", a.addr, "store", cfg.Store, "sessions_dir", dir.Root(), "auto_restore", cfg.AutoRestore, "max_conns", maxConns)

	if cfg.MetricsAddr != "" {
		conns.SetMax("metrics", metricsMaxConns)
		mlimit := apihttp.NewConnLimit("metrics", metricsMaxConns, conns)
		msrv := apihttp.NewServer(apihttp.NewMetricsHandler(metricsHandler, log), log, mlimit)
		maddr, err := a.serve(msrv, mlimit, cfg.MetricsAddr, "METRICS_ADDR")
		if err != nil {
			return a, err
		}
		log.Info("metrics listening", "addr", maddr, "path", "/metrics")
	}
	return a, nil
}

// openStore returns where the sessions are recorded and their stores:
// SESSIONS_DIR with STORE=sqlite; with STORE=postgres ws_sessions, one
// whatsmeow container for every device, and the process's one pool
// (migrated, closed after the manager stopped), which it returns too.
func (a *App) openStore(dir *store.Dir) (actors.Registry, whatsapp.Stores, *sql.DB, error) {
	cfg := a.cfg
	if cfg.Store != config.StorePostgres {
		return dir, whatsapp.SQLiteStores{Dir: dir}, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pgstore.Open(ctx, cfg.DatabaseURL, pgstore.PoolOptions{MaxConns: cfg.DatabaseMaxConns})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	a.onClose(func(context.Context) error { return db.Close() })
	n, err := pgstore.Migrate(ctx, db)
	if err != nil {
		return nil, nil, nil, err
	}
	devices, err := pgstore.NewDevices(ctx, db, whatsapp.Logger(a.log, "store"))
	if err != nil {
		return nil, nil, nil, err
	}
	a.log.Info("sessions stored in postgres", "migrations_applied", n, "max_conns", cfg.DatabaseMaxConns)
	return pgstore.NewRegistry(db), whatsapp.PostgresStores{Devices: devices}, db, nil
}

// serve listens on addr (named by env in errors) and serves srv there
// until Close shuts it down.
func (a *App) serve(srv *http.Server, limit *apihttp.ConnLimit, addr, env string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen on %s %s: %w", env, addr, err)
	}
	go func() { a.serveErr <- srv.Serve(limit.Listener(ln)) }()
	a.onClose(func(ctx context.Context) error {
		if err := srv.Shutdown(ctx); err != nil {
			a.log.Warn("http shutdown", "listener", env, "err", err)
		}
		return nil
	})
	return ln.Addr().String(), nil
}

// Run starts the restore (unless AUTO_RESTORE_SESSIONS is off), marks the
// service ready and serves until ctx ends or a listener fails; then it
// closes the App. If SESSIONS_DIR is removed or replaced meanwhile, Run
// returns store.ErrDirReplaced at once without closing the App: closing
// would write (session stores, the outbox) through paths that may now name
// another process's files, so the caller should exit straight away, which
// the service survives as it survives kill -9.
func (a *App) Run(ctx context.Context) error {
	// The HTTP server answers while the restore runs in the background.
	// In a cluster the sweep adopts each node's share instead: a restore
	// on every node would have every node try every session.
	if a.cfg.Clustered() {
		a.log.Info("CLUSTER is set: this node adopts its share of the stored sessions as it sweeps")
	} else if a.cfg.AutoRestore {
		if err := a.mgr.Restore(ctx, nil); err != nil {
			a.log.Error("❌ start-up restore could not start", "err", err)
		}
	} else {
		a.log.Info("AUTO_RESTORE_SESSIONS=false: stored sessions wait for POST /api/whatsapp/sessions/restore")
	}
	a.ready.Store(true)
	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout)
	case err := <-a.serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-a.dirReplaced:
		a.ready.Store(false)
		a.log.Error("❌ SESSIONS_DIR was removed or replaced while the service ran: exiting at once, so that two processes never log in with one set of keys",
			"dir", a.cfg.SessionsDir, "err", err)
		return err
	}
	return errors.Join(runErr, a.Close())
}

// Close stops taking requests, stops every session, and releases what New
// made, in reverse order, within SHUTDOWN_TIMEOUT. It returns the first
// failure (sessions that did not stop in time); later calls return the
// same.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		a.ready.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		defer cancel()
		for i := len(a.closers) - 1; i >= 0; i-- {
			if err := a.closers[i](ctx); err != nil && a.closeErr == nil {
				a.closeErr = err
			}
		}
	})
	return a.closeErr
}

// onClose registers the teardown of what was just made.
func (a *App) onClose(f func(context.Context) error) { a.closers = append(a.closers, f) }

// startRelay streams, from now until Close, the events the other nodes on
// pg commit into this node's live event stream (package relay). It holds
// one of the pool's connections.
func (a *App) startRelay(pg *sql.DB, node string) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		relay.Run(ctx, pg, node, a.events, a.log.With("component", "relay"))
	}()
	a.onClose(func(context.Context) error { stop(); <-done; return nil })
}

// Addr is the API listener's address (host:port), useful with HTTP_ADDR
// port 0.
func (a *App) Addr() string { return a.addr }

// APIKey is the key the API requires (API_KEY, or the one kept in the
// sessions directory).
func (a *App) APIKey() string { return a.apiKey }

// Sessions is the session manager, for callers inside the process.
func (a *App) Sessions() sessions.Service { return a.mgr }

// Webhooks is the durable outbox that keeps events and delivers them to
// WEBHOOK_URL: the sessions' event sink and the deliveries' admin API.
func (a *App) Webhooks() *webhooks.Outbox { return a.webhooks }

// Registry is the Prometheus registry /metrics serves.
func (a *App) Registry() *prometheus.Registry { return a.registry }

// apiKey is API_KEY, or else the key kept in the sessions directory
// (generated there the first time).
func apiKey(cfg config.Config, dir *store.Dir, log *slog.Logger) (string, error) {
	if cfg.APIKey != "" {
		return cfg.APIKey, nil
	}
	key, path, created, err := dir.APIKey()
	if err != nil {
		return "", err
	}
	if err := config.CheckAPIKey(key); err != nil {
		return "", fmt.Errorf("the key in API key file %s is %v; or delete the file to have a new key generated", path, err)
	}
	if created {
		log.Warn("API_KEY is not set: generated a key; read it from the file", "file", path)
	} else {
		log.Info("API_KEY is not set: using the key kept in the file", "file", path)
	}
	return key, nil
}

// OutboxFile, in SESSIONS_DIR, is the webhook outbox's database.
const OutboxFile = "outbox.db"

// openWebhooks opens the outbox (SESSIONS_DIR/outbox.db, or with
// STORE=postgres the shared database pg's, this node's deliveries) and
// starts its deliveries to WEBHOOK_URL, signed with WEBHOOK_SECRET or the
// secret kept in the sessions directory. Its teardown stops taking events,
// commits the ones queued, and stops the deliveries.
func (a *App) openWebhooks(dir *store.Dir, pg *sql.DB, m *metrics.Metrics) error {
	cfg, log := a.cfg, a.log
	urls := cfg.WebhookURLs()
	secret := cfg.WebhookSecret
	if len(urls) > 0 && secret == "" {
		s, path, created, err := dir.WebhookSecret(webhooks.NewSecret)
		if err != nil {
			return err
		}
		if err := webhooks.CheckSecret(s); err != nil {
			return fmt.Errorf("the webhook secret in file %s %v; or delete the file to have a new one generated", path, err)
		}
		if created {
			log.Warn("WEBHOOK_SECRET is not set: generated a signing secret; give it to the webhook receivers from the file", "file", path)
		} else {
			log.Info("WEBHOOK_SECRET is not set: signing with the secret kept in the file", "file", path)
		}
		secret = s
	}
	types, err := cfg.WebhookEventTypes()
	if err != nil {
		return err
	}
	opts := webhooks.Options{
		Path:         filepath.Join(dir.Root(), OutboxFile),
		Node:         cfg.NodeName,
		NodeTTL:      cfg.LeaseTTL,
		URLs:         urls,
		Events:       types,
		Secret:       secret,
		Timeout:      cfg.WebhookTimeout,
		RetryFor:     cfg.WebhookRetryFor,
		Keep:         cfg.WebhookKeep,
		AllowPrivate: cfg.WebhookAllowPrivate,
		Log:          log.With("component", "webhooks"),
		Observer:     m,
	}
	var o *webhooks.Outbox
	if pg != nil {
		// Shared by the nodes: a session's undelivered events follow it
		// to the node that takes it over.
		o, err = webhooks.OpenPostgres(pg, opts)
	} else {
		o, err = webhooks.Open(opts)
	}
	if err != nil {
		return err
	}
	a.webhooks = o
	a.onClose(func(ctx context.Context) error {
		if err := o.Close(ctx); err != nil {
			log.Error("webhook outbox did not close cleanly", "err", err)
			return err
		}
		return nil
	})
	if len(urls) == 0 {
		log.Info("WEBHOOK_URL is not set: events are kept in the outbox but not delivered")
	} else {
		log.Info("webhooks on", "endpoints", len(urls), "events", types, "allow_private", cfg.WebhookAllowPrivate)
	}
	return nil
}

// fakeStateFile, in SESSIONS_DIR, is where the in-process fake WhatsApp
// server remembers the devices its phone unlinked, as WhatsApp would
// across a restart of the service.
const fakeStateFile = ".fakewa-state.json"

// startFake is all of test mode's wiring to WhatsApp: it starts the
// in-process fake WhatsApp server (keeping its state in stateFile), or
// connects to an external one (FAKE_WA_ADDR), and trusts its test root
// key. The HTTP client it returns reaches the fake over TLS and trusts only
// the fake's CA (FAKE_WA_CA_FILE for an external one).
func (a *App) startFake(stateFile string) (*http.Client, fakeserver.Control, error) {
	cfg, log := a.cfg, a.log
	fakeserver.UseTestRootKey()
	if cfg.FakeServerAddr != "" {
		caPEM, err := os.ReadFile(cfg.FakeCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("FAKE_WA_CA_FILE: %w", err)
		}
		hc, err := fakeserver.HTTPClient(cfg.FakeServerAddr, caPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("FAKE_WA_CA_FILE %s: %w", cfg.FakeCAFile, err)
		}
		log.Warn("🧪 TEST MODE: every session talks to the external fake WhatsApp server, not WhatsApp",
			"fake_addr", cfg.FakeServerAddr, "control", cfg.FakeControlURL, "ca_file", cfg.FakeCAFile)
		return hc, fakeserver.NewRemote(cfg.FakeControlURL, nil), nil
	}
	fake, err := fakeserver.Start(fakeserver.Options{Log: log.With("component", "fakeserver"), StateFile: stateFile})
	if err != nil {
		return nil, nil, fmt.Errorf("start fake WhatsApp server: %w", err)
	}
	a.onClose(func(context.Context) error { return fake.Close() })
	hc, err := fakeserver.HTTPClient(fake.Addr(), fake.CACertPEM())
	if err != nil {
		return nil, nil, err
	}
	log.Warn("🧪 TEST MODE: every session talks to a local fake WhatsApp server, not WhatsApp", "fake_addr", fake.Addr())
	return hc, fake, nil
}

// metricsMaxConns caps the METRICS_ADDR listener: a few Prometheus
// servers scrape it.
const metricsMaxConns = 16

var (
	_ apihttp.ConnObserver = (*metrics.Conns)(nil)
	_ events.Observer      = (*metrics.Metrics)(nil)
)

// connCap is HTTP_MAX_CONNS, or else the cap apihttp.MaxConns sizes from
// the process's file descriptor limit (Go raises the soft limit to the hard
// one at start) and the sessions stored now.
func connCap(cfg config.Config, registry actors.Registry, log *slog.Logger) int {
	if cfg.HTTPMaxConns > 0 {
		return cfg.HTTPMaxConns
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file descriptor limit; assuming 1024", "err", err)
		rl.Cur = 1024
	}
	stored, _ := registry.Discover() // a listing error is reported by the restore
	n := apihttp.MaxConns(rl.Cur, len(stored))
	if need := 256 + 4*uint64(len(stored)) + uint64(n); rl.Cur < need {
		log.Warn("the file descriptor limit is low for the stored sessions: raise it (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile)",
			"limit", rl.Cur, "sessions", len(stored), "needs", need)
	}
	return n
}

func newLogger(cfg config.Config, w io.Writer) (*slog.Logger, error) {
	level, err := cfg.Level()
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// CheckHealth GETs /healthz on the port of addr (HTTP_ADDR), on loopback,
// and says why it did not answer 200.
func CheckHealth(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad HTTP_ADDR: %w", err)
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// dirCheckInterval is how often the service checks that it still owns
// SESSIONS_DIR (store.Dir.CheckLock).
var dirCheckInterval = 2 * time.Second

// watchDir checks dir's lock every interval and sends the error on
// replaced (once) when the directory was removed or replaced; stop ends
// it.
func watchDir(dir *store.Dir, every time.Duration, replaced chan<- error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// Other errors (the lock file cannot be read now) are
				// looked at again at the next tick.
				if err := dir.CheckLock(); errors.Is(err, store.ErrDirReplaced) {
					replaced <- err
					return
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
