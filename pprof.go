//go:build pprof

package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // the profiles, on http.DefaultServeMux
	"os"
)

// With the pprof build tag (go build -tags pprof, used by bench/ to
// profile the service as its own process), PPROF_ADDR, when set, serves
// net/http/pprof there: never in a production build.
func init() {
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go func() {
			if err := http.ListenAndServe(addr, nil); err != nil {
				slog.Error("pprof server stopped", "err", err)
			}
		}()
	}
}
