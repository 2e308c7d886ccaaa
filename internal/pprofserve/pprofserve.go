// Package pprofserve serves net/http/pprof on PPROF_ADDR for the binaries'
// pprof builds (go build -tags pprof), so that bench/ can profile the
// service and the fake server as their own processes. Only files under that
// build tag import it: a production build carries no profiling endpoint.
package pprofserve

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // the profiles, on http.DefaultServeMux
	"os"
)

// FromEnv serves the profiles on PPROF_ADDR (host:port) in the background
// when it is set, and does nothing when it is not.
func FromEnv() {
	addr := os.Getenv("PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof server stopped", "err", err)
		}
	}()
}
