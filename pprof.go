//go:build pprof

package main

import "github.com/whatsapp-sessions/whatsapp-sessions/internal/pprofserve"

// With the pprof build tag (go build -tags pprof, used by bench/ to
// profile the service as its own process), PPROF_ADDR, when set, serves
// net/http/pprof there: never in a production build.
func init() { pprofserve.FromEnv() }
