// Command whatsapp-sessions keeps many WhatsApp logins alive and restores
// every stored one by itself after a restart. main reads the configuration
// and runs the service that package app builds; it is the only place that
// exits. Its subcommands (commands.go): migrate-store copies SQLite session
// stores into Postgres, backup snapshots the stores.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
)

func main() {
	if len(os.Args) > 1 {
		if cmd := subcommands[os.Args[1]]; cmd != nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := cmd(ctx, os.Args[2:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		}
	}
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on HTTP_ADDR and exit 0 if it answers 200 (for Docker's HEALTHCHECK)")
	flag.Parse()
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "whatsapp-sessions:", err)
		os.Exit(2)
	}
	if *healthcheck {
		if err := app.CheckHealth(cfg.HTTPAddr); err != nil {
			fmt.Fprintln(os.Stderr, "healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "whatsapp-sessions:", err)
		os.Exit(1)
	}
}
