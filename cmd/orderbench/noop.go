package main

import (
	"context"
	"errors"
	"fmt"
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
