package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/netdelay"
)

// netdelayCmd runs a TCP proxy that delays each direction by --delay, until
// ctx ends: put it between orderd and its database to measure orderd as if
// the database were across a network (scripts/bench-scenarios.sh
// --db-latency does).
func netdelayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench netdelay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (port 0: a free one, printed)")
	upstream := fs.String("upstream", "", "host:port to forward to, e.g. the database's (required)")
	delay := fs.Duration("delay", 500*time.Microsecond, "delay added to each direction: a round trip costs twice it more")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" {
		return fmt.Errorf("netdelay: --upstream is required")
	}
	p, err := netdelay.Start(*listen, *upstream, *delay)
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(stdout, "netdelay: %s -> %s, %v each way\n", p.Addr(), *upstream, *delay)
	<-ctx.Done()
	return nil
}
