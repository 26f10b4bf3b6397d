package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// localServer serves a handler on a free loopback port.
type localServer struct {
	srv *http.Server
	ln  net.Listener
	url string
}

func httptestServer(h http.Handler) *localServer {
	return &localServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
}

func (s *localServer) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the no-op server: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the run's errors show it
		}
	}()
	return nil
}

func (s *localServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// noopCmd serves the no-op ceiling on --listen until ctx ends, so that an
// external load tool (wrk, hey) measures it in the same run as orderd.
func noopCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench noop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve the no-op handler on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen for the no-op server: %w", err)
	}
	srv := &localServer{srv: &http.Server{Handler: noopHandler(), ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	fmt.Fprintf(stdout, "no-op ceiling: POST http://%s/api/v1/orders answers 201\n", ln.Addr())
	go func() { _ = srv.srv.Serve(ln) }()
	<-ctx.Done()
	srv.stop()
	return nil
}
