package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/loadtest"
)

// embedded is an orderd running inside orderbench, wired as cmd/orderd wires
// its embedded default: SQLite, the batch strategy, in-process idempotency.
type embedded struct {
	URL        string
	AdminToken string
	db         *gormdb.DB
	server     *orderhttp.Server
}

// startEmbedded starts an orderd on a free loopback port with its SQLite
// database in dir.
func startEmbedded(ctx context.Context, dir string, logTo io.Writer) (*embedded, error) {
	db, err := gormdb.Open(ctx, "sqlite://"+filepath.Join(dir, "flashorder.db"), gormdb.Options{})
	if err != nil {
		return nil, fmt.Errorf("open embedded database: %w", err)
	}
	e := &embedded{AdminToken: randomToken(), db: db}
	e.server = orderhttp.NewServer(db, checkout.NewBatch(db, checkout.BatchOptions{}), inmem.NewIdempotencyStore(), e.AdminToken)
	e.server.Logger = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := e.server.Open("127.0.0.1:0"); err != nil {
		db.Close()
		return nil, fmt.Errorf("start embedded orderd: %w", err)
	}
	e.URL = e.server.URL()
	return e, nil
}

// Close stops the server and closes the database.
func (e *embedded) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(e.server.Close(ctx), e.db.Close())
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	var out outputs
	loadFlags(fs, &cfg, &out)
	// The demo's own defaults: a short flash sale of one hot SKU that sells
	// out, one unit per user. A --scenario replaces them.
	setDefault(fs, "duration", "6s")
	setDefault(fs, "stock", "2000")
	setDefault(fs, "per-user-limit", "1")
	setDefault(fs, "users", "20000")
	if err := parseFlags(fs, args, &cfg); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "orderbench-demo-")
	if err != nil {
		return fmt.Errorf("create demo directory: %w", err)
	}
	if out.HTML == "" {
		out.HTML = filepath.Join(dir, "report.html")
	}
	if out.JSON == "" {
		out.JSON = filepath.Join(dir, "results.json")
	}
	e, err := startEmbedded(ctx, dir, stderr)
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stdout, "orderbench demo: embedded orderd at %s (SQLite in %s, strategy batch)\n", e.URL, dir)
	what := "flash sale:"
	if cfg.Scenario.Name != "" {
		what = "scenario"
	}
	length := cfg.Duration.String()
	if cfg.Duration == 0 {
		length = fmt.Sprintf("%d requests", cfg.Requests)
	}
	fmt.Fprintf(stdout, "%s %s; %d clients for %s\n", what, cfg.Scenario, cfg.Concurrency, length)
	cfg.URLs = []string{e.URL}
	cfg.AdminToken = e.AdminToken
	cfg.Label = "demo"
	progressTo(&cfg, stderr, out.Quiet)
	return runAndReport(ctx, cfg, out, stdout)
}
