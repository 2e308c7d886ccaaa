// Command fakewa runs the fake WhatsApp server of whatsapp/fakeserver on its
// own, with its HTTP control API, so that a service in test mode (or a
// benchmark) in another process can connect real whatsmeow clients to it
// and act as their phones:
//
//	go run ./cmd/fakewa -addr 127.0.0.1:9400 -control 127.0.0.1:9401 -ca-out /tmp/fakewa-ca.pem
//
// It serves TLS with a certificate for web.whatsapp.com from a CA it makes
// at start, and writes that CA's certificate (PEM) to the -ca-out file:
// clients trust it, and nothing else, through fakeserver.HTTPClient (the
// service: FAKE_WA_CA_FILE), and its Noise certificates after
// fakeserver.UseTestRootKey. fakeserver.NewRemote on
// "http://127.0.0.1:9401" drives it. It stops on SIGINT or SIGTERM.
//
// `fakewa seed -dir SESSIONS_DIR -n N` writes N stored sessions that any
// fake server accepts instead (seed.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := func(ctx context.Context, args []string, logw io.Writer) error { return run(ctx, args, logw, nil) }
	if len(os.Args) > 1 && os.Args[1] == "seed" {
		run = seed
		os.Args = os.Args[1:]
	}
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fakewa:", err)
		os.Exit(1)
	}
}

// addrs are the addresses fakewa listens on, once it does.
type addrs struct {
	Server  string // WhatsApp protocol (websocket)
	Control string // HTTP control API
}

// run serves until ctx ends. ready, if not nil, is called with the actual
// listen addresses once both listeners are up.
func run(ctx context.Context, args []string, logw io.Writer, ready func(addrs)) error {
	fs := flag.NewFlagSet("fakewa", flag.ContinueOnError)
	fs.SetOutput(logw)
	serverAddr := fs.String("addr", "127.0.0.1:9400", "listen address of the fake WhatsApp server")
	controlAddr := fs.String("control", "127.0.0.1:9401", "listen address of the HTTP control API")
	caOut := fs.String("ca-out", "", "write the PEM certificate of the CA clients must trust to this file (required)")
	debug := fs.Bool("debug", false, "log connection-level debug messages")
	state := fs.String("state", "", "file that keeps the devices the phone unlinked and the keys of paired devices across restarts, as WhatsApp does (empty: memory only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caOut == "" {
		return errors.New("-ca-out is required: clients need the CA certificate to trust the server's TLS")
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level}))

	srv, err := fakeserver.Start(fakeserver.Options{Addr: *serverAddr, Log: log.With("component", "fakeserver"), StateFile: *state})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := writeFileAtomic(*caOut, srv.CACertPEM()); err != nil {
		return fmt.Errorf("write the CA certificate: %w", err)
	}

	ln, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		return fmt.Errorf("control API: listen on %s: %w", *controlAddr, err)
	}
	httpSrv := &http.Server{
		Handler:           srv.ControlHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Pairing calls wait for the client's answer; whatsmeow answers in
		// well under a minute.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Warn("fake WhatsApp server for tests: never point production clients at it",
		"addr", srv.Addr(), "control", ln.Addr().String(), "ca_file", *caOut)
	if ready != nil {
		ready(addrs{Server: srv.Addr(), Control: ln.Addr().String()})
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("control API: %w", err)
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = httpSrv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = httpSrv.Close()
	}
	<-serveErr // http.ErrServerClosed
	return errors.Join(err, srv.Close())
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so that a reader never sees a partial certificate.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	// A certificate is public; readable by the service's user whoever it is.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
