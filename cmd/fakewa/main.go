// Command fakewa runs the fake WhatsApp server of whatsapp/fakeserver on its
// own, with its HTTP control API, so that a service in test mode (or a
// benchmark) in another process can connect real whatsmeow clients to it
// and act as their phones:
//
//	go run ./cmd/fakewa -addr 127.0.0.1:9400 -control 127.0.0.1:9401
//
// Clients trust it after fakeserver.UseTestRootKey and dial it with
// fakeserver.HTTPClient("127.0.0.1:9400"); fakeserver.NewRemote on
// "http://127.0.0.1:9401" drives it. It stops on SIGINT or SIGTERM.
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
	"syscall"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
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
	debug := fs.Bool("debug", false, "log connection-level debug messages")
	state := fs.String("state", "", "file that keeps the devices the phone unlinked across restarts, as WhatsApp does (empty: memory only)")
	if err := fs.Parse(args); err != nil {
		return err
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
		"addr", srv.Addr(), "control", ln.Addr().String())
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
