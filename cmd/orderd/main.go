// Command orderd is the flashorder order server. With no flags it runs the
// embedded default: a SQLite file under ./data, the batch strategy, in-process
// idempotency, port 8080. Every flag --some-name can also be set as
// ORDERD_SOME_NAME; a flag wins over its variable. The server itself is
// package internal/orderd. Unless GOGC is set, orderd runs with
// GOGC=orderd.DefaultGCPercent (400).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flashorder/flashorder/internal/orderd"
)

func main() {
	orderd.TuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := orderd.Run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orderd:", err)
		os.Exit(1)
	}
}
