// Command whatsapp-sessions keeps many WhatsApp logins alive and restores
// every stored one by itself after a restart. main reads the configuration
// and calls run; run wires the parts together and is what end-to-end tests
// call.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	apihttp "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func main() {
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on HTTP_ADDR and exit 0 if it answers 200 (for Docker's HEALTHCHECK)")
	flag.Parse()
	if *healthcheck {
		os.Exit(checkHealth(os.Getenv("HTTP_ADDR")))
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "whatsapp-sessions:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "whatsapp-sessions:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down in order: stop taking
// requests, stop every session (each disconnects and closes its store),
// then the actor system, then release the sessions directory.
func run(ctx context.Context, cfg config.Config, logw io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg, logw)
	if err != nil {
		return err
	}
	whatsapp.SetDeviceName(cfg.DeviceName)

	dir, err := store.OpenDir(cfg.SessionsDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	if dir.GroupWritable() {
		log.Warn("SESSIONS_DIR is writable by its group: every member can plant or replace a session's credentials; run chmod g-w on it unless that is intended",
			"dir", dir.Root())
	}

	apiKey := cfg.APIKey
	if apiKey == "" {
		key, path, created, err := dir.APIKey()
		if err != nil {
			return err
		}
		if err := config.CheckAPIKey(key); err != nil {
			return fmt.Errorf("the key in API key file %s is %v; or delete the file to have a new key generated", path, err)
		}
		apiKey = key
		if created {
			log.Warn("API_KEY is not set: generated a key; read it from the file", "file", path)
		} else {
			log.Info("API_KEY is not set: using the key kept in the file", "file", path)
		}
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	wopts := whatsapp.Options{Log: log, StoreIdleTimeout: cfg.StoreIdleTimeout}
	var driver *testmode.Driver
	var control fakeserver.Control
	if cfg.TestMode {
		fake, ctl, closeFake, err := startFake(cfg, filepath.Join(dir.Root(), fakeStateFile), log)
		if err != nil {
			return err
		}
		defer closeFake()
		wopts.HTTPClient, control = fake, ctl
	}
	mgr, err := actors.NewManager(actors.Options{
		Dir:                dir,
		Opener:             whatsapp.NewStoreOpener(dir, wopts),
		Metrics:            m,
		Log:                log,
		Backoff:            actors.Backoff{Min: cfg.BackoffMin, Max: cfg.BackoffMax, Reset: cfg.BackoffReset},
		RestoreConcurrency: cfg.RestoreConcurrency,
		ConnectRate:        cfg.ConnectRate,
		ConnectBurst:       cfg.ConnectBurst,
		RestartBudget:      cfg.RestartBudget,
		RestartWindow:      cfg.RestartWindow,
		RequestTimeout:     cfg.RequestTimeout,
	})
	if err != nil {
		return err
	}
	if control != nil {
		driver = testmode.New(mgr, control)
	}

	var ready atomic.Bool
	listeners := []string{"api"}
	if cfg.MetricsAddr != "" {
		listeners = append(listeners, "metrics")
	}
	conns := metrics.NewConns(reg, listeners...)
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	hopts := apihttp.Options{
		Sessions: mgr,
		APIKey:   apiKey,
		Log:      log,
		Observer: m,
		OpenAPI:  apihttp.OpenAPI(),
		Ready:    ready.Load,
	}
	// /metrics names every session: on the API port it needs the key; with
	// METRICS_ADDR it is served there alone, and not on the API port.
	if cfg.MetricsAddr == "" {
		hopts.Metrics = metricsHandler
	}
	if driver != nil {
		hopts.Test = driver
	}
	maxConns := connCap(cfg, dir, log)
	limit := apihttp.NewConnLimit("api", maxConns, conns)
	conns.SetMax("api", maxConns)
	srv := apihttp.NewServer(apihttp.NewHandler(hopts), log, limit)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		shutdownManager(mgr, cfg, log)
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(limit.Listener(ln)) }()
	log.Info("listening", "addr", ln.Addr().String(), "sessions_dir", dir.Root(), "auto_restore", cfg.AutoRestore, "max_conns", maxConns)

	var metricsSrv *http.Server
	if cfg.MetricsAddr != "" {
		mlimit := apihttp.NewConnLimit("metrics", metricsMaxConns, conns)
		conns.SetMax("metrics", metricsMaxConns)
		metricsSrv = apihttp.NewServer(apihttp.NewMetricsHandler(metricsHandler, log), log, mlimit)
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			shutdownManager(mgr, cfg, log)
			return fmt.Errorf("listen on METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
		}
		go func() { serveErr <- metricsSrv.Serve(mlimit.Listener(mln)) }()
		log.Info("metrics listening", "addr", mln.Addr().String(), "path", "/metrics")
	}

	// The HTTP server answers while the restore runs in the background.
	if cfg.AutoRestore {
		if err := mgr.Restore(ctx, nil); err != nil {
			log.Error("❌ start-up restore could not start", "err", err)
		}
	} else {
		log.Info("AUTO_RESTORE_SESSIONS=false: stored sessions wait for POST /api/whatsapp/sessions/restore")
	}
	ready.Store(true)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(sctx)
	}
	if driver != nil {
		driver.Close()
	}
	if err := mgr.Shutdown(sctx); err != nil {
		log.Error("sessions did not all stop in time", "err", err)
		if runErr == nil {
			runErr = err
		}
	} else {
		log.Info("stopped: every session disconnected and its store closed")
	}
	return runErr
}

// fakeStateFile, in SESSIONS_DIR, is where the in-process fake WhatsApp
// server remembers the devices its phone unlinked, as WhatsApp would
// across a restart of the service.
const fakeStateFile = ".fakewa-state.json"

// startFake starts the in-process fake WhatsApp server (keeping its state
// in stateFile), or connects to an external one (FAKE_WA_ADDR), and trusts
// its test root key. The HTTP client it returns reaches the fake over TLS
// and trusts only the fake's CA (FAKE_WA_CA_FILE for an external one).
func startFake(cfg config.Config, stateFile string, log *slog.Logger) (*http.Client, fakeserver.Control, func(), error) {
	fakeserver.UseTestRootKey()
	if cfg.FakeServerAddr != "" {
		caPEM, err := os.ReadFile(cfg.FakeCAFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("FAKE_WA_CA_FILE: %w", err)
		}
		hc, err := fakeserver.HTTPClient(cfg.FakeServerAddr, caPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("FAKE_WA_CA_FILE %s: %w", cfg.FakeCAFile, err)
		}
		log.Warn("🧪 TEST MODE: every session talks to the external fake WhatsApp server, not WhatsApp",
			"fake_addr", cfg.FakeServerAddr, "control", cfg.FakeControlURL, "ca_file", cfg.FakeCAFile)
		return hc, fakeserver.NewRemote(cfg.FakeControlURL, nil), func() {}, nil
	}
	fake, err := fakeserver.Start(fakeserver.Options{Log: log.With("component", "fakeserver"), StateFile: stateFile})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start fake WhatsApp server: %w", err)
	}
	hc, err := fakeserver.HTTPClient(fake.Addr(), fake.CACertPEM())
	if err != nil {
		_ = fake.Close()
		return nil, nil, nil, err
	}
	log.Warn("🧪 TEST MODE: every session talks to a local fake WhatsApp server, not WhatsApp", "fake_addr", fake.Addr())
	return hc, fake, func() { _ = fake.Close() }, nil
}

// metricsMaxConns caps the METRICS_ADDR listener: a few Prometheus
// servers scrape it.
const metricsMaxConns = 16

var _ apihttp.ConnObserver = (*metrics.Conns)(nil)

// connCap is HTTP_MAX_CONNS, or else the cap apihttp.MaxConns sizes from
// the process's file descriptor limit (Go raises the soft limit to the hard
// one at start) and the sessions stored now.
func connCap(cfg config.Config, dir *store.Dir, log *slog.Logger) int {
	if cfg.HTTPMaxConns > 0 {
		return cfg.HTTPMaxConns
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file descriptor limit; assuming 1024", "err", err)
		rl.Cur = 1024
	}
	stored, _ := dir.Discover() // a listing error is reported by the restore
	n := apihttp.MaxConns(rl.Cur, len(stored))
	if need := 256 + 4*uint64(len(stored)) + uint64(n); rl.Cur < need {
		log.Warn("the file descriptor limit is low for the stored sessions: raise it (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile)",
			"limit", rl.Cur, "sessions", len(stored), "needs", need)
	}
	return n
}

func shutdownManager(mgr *actors.Manager, cfg config.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := mgr.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
	}
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

// checkHealth GETs /healthz on the port of addr, on loopback.
func checkHealth(addr string) int {
	if addr == "" {
		addr = ":8080"
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck: bad HTTP_ADDR:", err)
		return 1
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: status", resp.Status)
		return 1
	}
	return 0
}
