// Command orderd is the flashorder order server. With no flags it runs the
// embedded default: a SQLite file under ./data, in-process idempotency, port
// 8080. Every flag --some-name can also be set as ORDERD_SOME_NAME; a flag wins
// over its variable.
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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orderd:", err)
		os.Exit(1)
	}
}

// run starts orderd, waits for ctx to end (a signal), then drains and stops it.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	m := NewMain(stderr)
	if err := m.ParseFlags(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := m.Run(ctx); err != nil {
		m.Close(context.Background())
		return err
	}
	<-ctx.Done()
	m.Logger.Info("shutting down: finishing in-flight requests", "timeout", m.Config.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
	defer cancel()
	return m.Close(shutdownCtx)
}

// Config is orderd's configuration, one field per flag.
type Config struct {
	Listen          string
	DB              string
	DBMaxConns      int
	Strategy        string
	Lock            string
	Idempotency     string
	AdminToken      string
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
}

// Main is the orderd program: its configuration and the backends it opened.
type Main struct {
	Config Config
	Logger *slog.Logger

	stderr io.Writer
	db     *gormdb.DB
	lock   *lockBackend
	server *orderhttp.Server
}

// NewMain returns a Main that logs to stderr.
func NewMain(stderr io.Writer) *Main {
	return &Main{stderr: stderr, Logger: slog.New(slog.NewTextHandler(stderr, nil))}
}

// FlagSet returns orderd's flags bound to cfg, with their defaults.
func FlagSet(cfg *Config, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("orderd", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.Listen, "listen", ":8080", "HTTP listen address")
	fs.StringVar(&cfg.DB, "db", "sqlite://data/flashorder.db", "database URL: sqlite://path, postgres://user:pass@host:port/db?sslmode=disable or mysql://user:pass@host:port/db")
	fs.IntVar(&cfg.DBMaxConns, "db-max-conns", gormdb.DefaultMaxConns, "connection pool size for PostgreSQL and MySQL (SQLite uses one)")
	fs.StringVar(&cfg.Strategy, "strategy", "row", "stock deduction strategy: row or lock")
	fs.StringVar(&cfg.Lock, "lock", "memory", "lock backend: memory, zk://host:port[,host:port]/prefix, etcd://host:port/prefix or redis://host:port/db")
	fs.StringVar(&cfg.Idempotency, "idempotency", "memory", "idempotency store: memory")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token for the admin endpoints (generated and logged when empty)")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a stop waits for in-flight requests")
	return fs
}

// EnvName returns the environment variable for a flag: ORDERD_ and the flag
// name in upper case with - turned into _.
func EnvName(flagName string) string {
	return "ORDERD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ParseFlags reads the configuration from args, then from ORDERD_* variables
// (through getenv) for the flags that args did not set.
func (m *Main) ParseFlags(args []string, getenv func(string) string) error {
	fs := FlagSet(&m.Config, m.stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(EnvName(f.Name)); v != "" && !set[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return m.configureLogger()
}

func (m *Main) configureLogger() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.Config.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch m.Config.LogFormat {
	case "text":
		m.Logger = slog.New(slog.NewTextHandler(m.stderr, opts))
	case "json":
		m.Logger = slog.New(slog.NewJSONHandler(m.stderr, opts))
	default:
		return fmt.Errorf("--log-format must be text or json, not %q", m.Config.LogFormat)
	}
	return nil
}

// Run opens the backends chosen by the configuration and starts serving.
func (m *Main) Run(ctx context.Context) error {
	cfg := &m.Config
	db, err := gormdb.Open(ctx, cfg.DB, gormdb.Options{MaxConns: cfg.DBMaxConns})
	if err != nil {
		return err
	}
	m.db = db

	m.lock, err = openLocker(ctx, cfg.Lock)
	if err != nil {
		return err
	}

	var placer flashorder.OrderPlacer
	switch cfg.Strategy {
	case "row":
		placer = checkout.NewRow(db)
	case "lock":
		placer = checkout.NewLock(db, m.lock.locker)
		if cfg.Lock == "memory" && db.Engine() != gormdb.SQLite {
			m.Logger.Warn("--strategy lock with --lock memory: the lock and its fencing tokens are local to this process; "+
				"other instances on this database are not excluded, and the fence will refuse the orders of some of them (503); use zk://, etcd:// or redis://",
				"db", db.Engine())
		}
	default:
		return fmt.Errorf("--strategy %q is not supported (want row or lock)", cfg.Strategy)
	}

	var idem flashorder.IdempotencyStore
	switch cfg.Idempotency {
	case "memory":
		idem = inmem.NewIdempotencyStore()
	default:
		return fmt.Errorf("--idempotency %q is not supported (want memory)", cfg.Idempotency)
	}

	if cfg.AdminToken == "" {
		cfg.AdminToken = randomToken()
		m.Logger.Warn("no --admin-token given; generated one for this run", "admin_token", cfg.AdminToken)
	}

	m.server = orderhttp.NewServer(db, placer, idem, cfg.AdminToken)
	m.server.Logger = m.Logger
	if m.lock.ping != nil {
		m.server.AddReadyCheck("lock", m.lock.ping)
	}
	if err := m.server.Open(cfg.Listen); err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	m.Logger.Info("orderd listening", "addr", m.server.Addr().String(), "db", db.Engine(), "strategy", cfg.Strategy,
		"lock", cfg.Lock, "idempotency", cfg.Idempotency)
	return nil
}

// URL returns the base URL orderd serves on, once Run returned.
func (m *Main) URL() string { return m.server.URL() }

// Close stops accepting requests, waits until ctx ends for in-flight ones, and
// closes the backends.
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	if m.server != nil {
		errs = append(errs, m.server.Close(ctx))
	}
	if m.lock != nil {
		errs = append(errs, m.lock.close())
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
	}
	return errors.Join(errs...)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
