// Package orderd is the flashorder order server, importable: its
// configuration (Config, one field per flag, FlagSet, ParseFlags with the
// ORDERD_* variables), the one place that picks backends from it (Main.Run),
// and Run, the whole program that cmd/orderd's main calls. orderbench's demo
// runs the same Main, so that what it measures is the server users run.
package orderd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/metrics"
	"github.com/flashorder/flashorder/jwtauth"
	"github.com/flashorder/flashorder/redis"
)

// Run is orderd: it reads the configuration from args and getenv, starts
// serving, waits for ctx to end (a signal), then drains and stops.
func Run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if versionRequested(args) {
		fmt.Fprintln(stderr, versionLine())
		return nil
	}
	m := NewMain(stderr)
	if err := m.ParseFlags(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	goredis.SetLogger(&redisLogger{logger: m.Logger})
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

// DefaultDBIdleTxTimeout is --db-idle-tx-timeout's default: far above the
// gaps between a batch's statements (milliseconds), short enough that the
// other instances sell again within seconds of one freezing.
const DefaultDBIdleTxTimeout = 2 * time.Second

// DefaultDBLockTimeout is --db-lock-timeout's default: below
// DefaultDBIdleTxTimeout, so that the sessions of a frozen orderd that wait
// for a row give up before the database ends the frozen holder's session
// (and are not granted the row, to hold it frozen in turn); far above how
// long a batch holds the hot row (milliseconds). A waiter that gives up is
// retried at once, within --order-timeout.
const DefaultDBLockTimeout = time.Second

// DefaultDBKeepAlive is --db-keepalive's default: PostgreSQL notices a client
// that is gone (no TCP acknowledgement) within about this long.
const DefaultDBKeepAlive = 5 * time.Second

// Config is orderd's configuration, one field per flag.
type Config struct {
	Listen          string
	DB              string
	DBMaxConns      int
	DBIdleTxTimeout time.Duration
	DBLockTimeout   time.Duration
	DBKeepAlive     time.Duration
	Strategy        string
	BatchMax        int
	BatchQueue      int
	BatchPipeline   int
	Segments        int
	Lock            string
	Idempotency     string
	AdminToken      string
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
	DebugListen     string

	PaymentTimeout       time.Duration
	SweepInterval        time.Duration
	SweepBatch           int
	PaymentWebhookSecret string

	IdempotencyRetention time.Duration
	IdempotencyClaimTTL  time.Duration
	RateLimitUser        string
	RateLimitBurst       int
	RateLimitStore       string
	MaxInflight          int
	OrderTimeout         time.Duration
	SoldOutTTL           time.Duration
	ProductCacheTTL      time.Duration
	IdempotencyMaxKeys   int

	Auth        string
	JWTSecret   string
	JWTJWKS     string
	JWTIssuer   string
	JWTAudience string
}

// Main is the orderd program: its configuration and the backends it opened.
type Main struct {
	Config Config
	Logger *slog.Logger

	// SweeperLocker, when set before Run, elects the expiry sweeper instead
	// of the --lock backend (which the lock strategy still uses), and is not
	// closed by Close: tests share one in-process Locker between two Mains
	// to elect one sweeper.
	SweeperLocker flashorder.Locker
	// StartupTimeout bounds connecting to each backend in Run; the default
	// is 10s.
	StartupTimeout time.Duration

	stderr  io.Writer
	db      *gormdb.DB
	auth    *jwtauth.Verifier
	server  *orderhttp.Server
	lock    *lockBackend
	sweeper *checkout.Sweeper
	debug   *http.Server
	gate    *checkout.Gate
	// stopListening ends the subscription to other instances' product
	// changes.
	stopListening context.CancelFunc
	// redisClients holds one client per Redis URL in use, by URL.
	redisClients map[string]*goredis.Client

	lockMetrics *metrics.LockMetrics
	// registerStrategyMetrics, when the strategy has metrics of its own,
	// registers them (set by openStrategy, called by instrument).
	registerStrategyMetrics func(prometheus.Registerer) error
}

// NewMain returns a Main that logs to stderr.
func NewMain(stderr io.Writer) *Main {
	return &Main{stderr: stderr, Logger: slog.New(slog.NewTextHandler(stderr, nil))}
}

// FlagSet returns orderd's flags bound to cfg, with their defaults.
func FlagSet(cfg *Config, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("orderd", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() { printUsage(fs.Output(), fs) }
	fs.StringVar(&cfg.Listen, "listen", ":8080", "HTTP listen address")
	fs.StringVar(&cfg.DB, "db", "sqlite://data/flashorder.db", "database URL: sqlite://path, postgres://user:pass@host:port/db?sslmode=disable or mysql://user:pass@host:port/db")
	fs.IntVar(&cfg.DBMaxConns, "db-max-conns", gormdb.DefaultMaxConns, "connection pool size for PostgreSQL and MySQL (SQLite uses one)")
	fs.DurationVar(&cfg.DBIdleTxTimeout, "db-idle-tx-timeout", DefaultDBIdleTxTimeout, "PostgreSQL and MariaDB: end a session idle inside a transaction this long, so a frozen orderd releases its row locks (0: off)")
	fs.DurationVar(&cfg.DBLockTimeout, "db-lock-timeout", DefaultDBLockTimeout, "PostgreSQL and MySQL/MariaDB: a statement waiting this long for a row lock gives up and its transaction is retried within --order-timeout; keep it below --db-idle-tx-timeout (MySQL/MariaDB: whole seconds; 0: the database's default)")
	fs.DurationVar(&cfg.DBKeepAlive, "db-keepalive", DefaultDBKeepAlive, "PostgreSQL: TCP keepalive and user timeout of the server side of orderd's connections, so that the sessions of a cut-off orderd end (0: the server's default)")
	fs.StringVar(&cfg.Strategy, "strategy", "batch", "stock deduction strategy: batch, row, segment or lock")
	fs.IntVar(&cfg.BatchMax, "batch-max", checkout.DefaultMaxBatch, "batch strategy: most orders in one transaction")
	fs.IntVar(&cfg.BatchQueue, "batch-queue", checkout.DefaultMaxQueue, "batch strategy: most orders waiting for a batch before 503 overloaded")
	fs.IntVar(&cfg.BatchPipeline, "batch-pipeline", 0, "batch strategy: batch transactions in flight at once (0: 2, or 1 on SQLite)")
	fs.IntVar(&cfg.Segments, "segments", checkout.DefaultSegments, "segment strategy: stock rows per SKU")
	fs.StringVar(&cfg.Lock, "lock", "memory", "lock backend: memory, zk://host:port[,host:port]/prefix, etcd://host:port/prefix or redis://host:port/db")
	fs.StringVar(&cfg.Idempotency, "idempotency", "memory", "idempotency store: memory or redis://host:port/db")
	fs.DurationVar(&cfg.IdempotencyRetention, "idempotency-retention", flashorder.DefaultIdempotencyRetention, "how long stored idempotent answers are kept")
	fs.IntVar(&cfg.IdempotencyMaxKeys, "idempotency-max-keys", inmem.DefaultIdempotencyMaxKeys, "idempotency memory: most keys held, oldest dropped first (0: no bound)")
	fs.DurationVar(&cfg.IdempotencyClaimTTL, "idempotency-claim-ttl", redis.DefaultClaimTTL, "how long an in-flight Redis claim outlives an owner that died")
	fs.StringVar(&cfg.RateLimitUser, "rate-limit-user", "", "per-user order rate limit, N/s, N/m or N/h (empty: off)")
	fs.IntVar(&cfg.RateLimitBurst, "rate-limit-burst", 0, "orders a user may burst above the rate (0: the rate's N)")
	fs.StringVar(&cfg.RateLimitStore, "rate-limit-store", "", "rate limit state: memory or redis://host:port/db (empty: the --idempotency Redis, else memory)")
	fs.DurationVar(&cfg.OrderTimeout, "order-timeout", orderhttp.DefaultOrderTimeout, "how long an order request may wait for the database before 503 unavailable (0: no bound)")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", orderhttp.DefaultMaxInflight, "order requests in flight per instance before 503 overloaded (0: no bound)")
	fs.DurationVar(&cfg.SoldOutTTL, "sold-out-ttl", checkout.DefaultSoldOutTTL, "how long a sold-out SKU is answered without the database before the mark is renewed from it: stock returned by a cancel or an expiry is sold again within this (0: off)")
	fs.DurationVar(&cfg.ProductCacheTTL, "product-cache-ttl", checkout.DefaultProductCacheTTL, "how long a product is served from memory (the product page, refusals outside the sale window); a PUT through this instance, or through any with --idempotency on Redis, is seen at once (0: off)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token for the admin endpoints (generated and logged when empty)")
	fs.StringVar(&cfg.Auth, "auth", "none", "users: none (the body's user_id) or jwt (a bearer JWT's sub)")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "auth jwt: HS256 key of the users' tokens")
	fs.StringVar(&cfg.JWTJWKS, "jwt-jwks", "", "auth jwt: JWK Set file or https URL of the users' token keys (RS256, ES256, EdDSA)")
	fs.StringVar(&cfg.JWTIssuer, "jwt-issuer", "", "auth jwt: required iss claim (empty: not checked)")
	fs.StringVar(&cfg.JWTAudience, "jwt-audience", "", "auth jwt: required aud claim (empty: not checked)")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a stop waits for in-flight requests")
	fs.StringVar(&cfg.DebugListen, "debug-listen", "", "address for pprof at /debug/pprof/ (off when empty; keep it on loopback)")
	fs.DurationVar(&cfg.PaymentTimeout, "payment-timeout", flashorder.DefaultPaymentTimeout, "how long an order may stay unpaid before it expires and its stock returns, unless one of its products has a payment_window (then the shortest such window)")
	fs.DurationVar(&cfg.SweepInterval, "sweep-interval", checkout.DefaultSweepInterval, "how often the elected sweeper expires unpaid orders")
	fs.IntVar(&cfg.SweepBatch, "sweep-batch", checkout.DefaultExpireBatch, "how many orders one expiry transaction ends at most")
	fs.StringVar(&cfg.PaymentWebhookSecret, "payment-webhook-secret", "", "HMAC-SHA256 key of POST /api/v1/payments/webhook (disabled when empty)")
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
	var db *gormdb.DB
	err := m.connectWithin(ctx, "database", cfg.DB, 0, func(ctx context.Context) (err error) {
		db, err = gormdb.Open(ctx, cfg.DB, gormdb.Options{MaxConns: cfg.DBMaxConns,
			IdleTxTimeout: cfg.DBIdleTxTimeout, LockTimeout: cfg.DBLockTimeout, KeepAlive: cfg.DBKeepAlive})
		return err
	})
	if err != nil {
		return err
	}
	m.db = db

	err = m.connect(ctx, "lock", cfg.Lock, func(ctx context.Context) (err error) {
		m.lock, err = openLocker(ctx, cfg.Lock)
		return err
	})
	if err != nil {
		return err
	}
	m.lockMetrics = metrics.NewLockMetrics()

	listenCtx, stopListening := context.WithCancel(context.WithoutCancel(ctx))
	m.stopListening = stopListening
	path, err := m.openOrders(listenCtx, db)
	if err != nil {
		return err
	}
	limiter, err := m.rateLimiter(path.idemRedis)
	if err != nil {
		return err
	}

	if cfg.AdminToken == "" {
		cfg.AdminToken = randomToken()
		m.Logger.Warn("no --admin-token given; generated one for this run", "admin_token", cfg.AdminToken)
	}

	auth, err := m.openAuth(ctx)
	if err != nil {
		return err
	}
	lifecycle, err := m.newLifecycle()
	if err != nil {
		return err
	}
	var orderLifecycle flashorder.OrderLifecycle = lifecycle
	if m.gate != nil {
		orderLifecycle = m.gate.Lifecycle(lifecycle)
	}
	m.server = orderhttp.NewServer(orderhttp.Config{
		Store: path.store, Orders: path.orders, Products: path.products, AdminToken: cfg.AdminToken,
		Logger: m.Logger, Lifecycle: orderLifecycle, PaymentWebhookSecret: cfg.PaymentWebhookSecret,
		MaxInflight: cfg.MaxInflight, OrderTimeout: cfg.OrderTimeout, Authenticator: auth, RateLimiter: limiter,
	})
	m.addReadyChecks(db)
	if err := m.instrument(); err != nil {
		return err
	}
	if err := m.startSweeper(lifecycle); err != nil {
		return err
	}
	if err := m.server.Open(cfg.Listen); err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if cfg.DebugListen != "" {
		if err := m.openDebug(cfg.DebugListen); err != nil {
			return err
		}
	}
	m.logListening(db)
	return nil
}

// addReadyChecks makes /readyz check every Redis in use and the lock
// service, and name the PostgreSQL server orderd writes to.
func (m *Main) addReadyChecks(db *gormdb.DB) {
	for u, c := range m.redisClients {
		name := "redis"
		if len(m.redisClients) > 1 {
			name = "redis " + redactURL(u)
		}
		m.server.AddReadyCheck(name, func(ctx context.Context) error {
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis %s: %w", redactURL(u), err)
			}
			return nil
		})
	}
	if m.lock.ping != nil {
		m.server.AddReadyCheck("lock", m.lock.ping)
	}
	if db.Engine() == gormdb.Postgres {
		m.server.AddReadyInfo("db_writes_to", dbWritesTo(db))
	}
}

// logListening logs what orderd serves with, and warns when it trusts the
// body's user_id on an address other machines reach.
func (m *Main) logListening(db *gormdb.DB) {
	cfg := &m.Config
	m.Logger.Info("orderd listening", "addr", m.server.Addr().String(), "db", db.Engine(), "strategy", cfg.Strategy,
		"lock", redactURL(cfg.Lock), "idempotency", redactURL(cfg.Idempotency), "auth", cfg.Auth)
	if cfg.Auth == "none" && !loopback(m.server.Addr()) {
		m.Logger.Warn("--auth none on an address other machines reach: any client can act as any user (read, cancel and pay their orders); use --auth jwt",
			"addr", m.server.Addr().String())
	}
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
	if m.debug != nil {
		errs = append(errs, m.debug.Close())
	}
	errs = append(errs, m.stopSweeper())
	if m.stopListening != nil {
		m.stopListening()
	}
	if m.lock != nil {
		errs = append(errs, m.lock.close())
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
	}
	if m.auth != nil {
		m.auth.Close()
	}
	for _, c := range m.redisClients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openDebug serves pprof on its own listener, apart from the API.
func (m *Main) openDebug(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", redactedCmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: orderhttp.ReadHeaderTimeout}
	go func() { _ = m.debug.Serve(ln) }()
	m.Logger.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dbWritesTo is the /readyz check that names the PostgreSQL server orderd
// writes to (host:port; with a multi-host --db URL, the current primary). A
// server that no longer takes writes (a standby) fails the check.
func dbWritesTo(db *gormdb.DB) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		addr, writable, err := db.WritesTo(ctx)
		if err != nil {
			return "", err
		}
		if !writable {
			return "", fmt.Errorf("database server %s is a standby (read-only)", addr)
		}
		return addr, nil
	}
}
