package http_test

import (
	"io"
	"log/slog"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
)

// newServer returns a server on cfg, as orderd wires one: its orders go to
// placer behind checkout.Idempotent with idem (a fresh in-process store when
// nil) and cfg.Store as the final word on a key. An empty AdminToken is
// "admin"; a nil Logger discards.
func newServer(cfg orderhttp.Config, placer flashorder.OrderPlacer, idem flashorder.IdempotencyStore) *orderhttp.Server {
	if idem == nil {
		idem = inmem.NewIdempotencyStore()
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = "admin"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Orders = checkout.NewIdempotent(placer, idem, cfg.Store, cfg.Logger)
	return orderhttp.NewServer(cfg)
}
