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
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/jwtauth"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/relay"
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

// Main is the orderd program: its configuration, and what Close stops.
type Main struct {
	Config Config
	Logger *slog.Logger

	// SweeperLocker, when set before Run, elects the expiry sweeper and the
	// events relay instead of the --lock backend (which the lock strategy
	// still uses), and is not closed by Close: tests share one in-process
	// Locker between two Mains to elect one sweeper.
	SweeperLocker flashorder.Locker
	// StartupTimeout bounds connecting to each backend in Run; the default
	// is 10s.
	StartupTimeout time.Duration

	stderr io.Writer

	// What Run opened, kept for Close only: Run's steps pass what they
	// build to the next as values.
	db           *gormdb.DB
	redisClients redisClients
	lock         *lockBackend
	auth         *jwtauth.Verifier
	server       *orderhttp.Server
	sweeper      *checkout.Sweeper
	relay        *relay.Relay
	room         *queue.Room
	// queueClient is the waiting room's Redis client, when it has one.
	queueClient io.Closer
	// ipClient is the per-IP limit's Redis client, when it has one.
	ipClient io.Closer
	// eventsSink is the relay's sink when it holds a connection
	// (nats://), closed after the relay stopped.
	eventsSink io.Closer
	debug      *http.Server
	// stopListening ends the subscription to other instances' product
	// changes.
	stopListening context.CancelFunc
}

// NewMain returns a Main that logs to stderr.
func NewMain(stderr io.Writer) *Main {
	return &Main{stderr: stderr, Logger: slog.New(slog.NewTextHandler(stderr, nil))}
}

// ParseFlags reads the configuration from args, then from ORDERD_* variables
// (through getenv) for the flags that args did not set, and validates it
// (Config.Validate), so that a configuration orderd cannot run with stops it
// before it opens anything.
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
	if err := m.Config.Validate(); err != nil {
		return err
	}
	h, err := m.Config.logHandler(m.stderr)
	if err != nil {
		return err
	}
	m.Logger = slog.New(h)
	return nil
}

// Run opens the backends chosen by the configuration and starts serving. It
// validates the configuration first (ParseFlags did too; a Main built in
// code may not have called it). Each step takes what an earlier one built
// and returns what it builds.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	cfg := &m.Config
	if cfg.AdminToken == "" {
		cfg.AdminToken = randomToken()
		m.Logger.Warn("no --admin-token given; generated one for this run", "admin_token", cfg.AdminToken)
	}

	db, err := m.openDB(ctx)
	if err != nil {
		return err
	}
	m.db = db
	// The Redis clients are opened first, one per URL, so that every flag
	// naming the same Redis (--lock, --idempotency, --rate-limit-store)
	// shares one; m.redisClients holds them even after an error, for Close.
	m.redisClients, err = m.openRedisClients(ctx)
	if err != nil {
		return err
	}
	m.lock, err = m.openLock(ctx, m.redisClients)
	if err != nil {
		return err
	}
	measure := newLockMeasure(scheme(cfg.Lock))
	strategy, err := m.openStrategy(db, measure.wrap(m.lock.locker))
	if err != nil {
		return err
	}
	idemRedis := m.redisClients.forStore(cfg.Idempotency)
	idem := m.openIdempotency(idemRedis)
	listenCtx, stopListening := context.WithCancel(context.WithoutCancel(ctx))
	m.stopListening = stopListening
	path, err := m.openOrders(listenCtx, db, strategy.placer, idem, idemRedis)
	if err != nil {
		return err
	}
	limiter := m.rateLimiter(m.redisClients)
	proxies, _ := orderhttp.ParseTrustedProxies(cfg.TrustedProxies) // checked by Validate
	var challenge *orderhttp.ChallengeVerifier
	if cfg.ChallengeVerifyURL != "" {
		challenge, _ = orderhttp.NewChallengeVerifier(cfg.ChallengeVerifyURL, cfg.ChallengeSecret) // checked by Validate
	}
	auth, err := m.openAuth(ctx)
	if err != nil {
		return err
	}
	m.auth = auth

	lifecycle := newLifecycle(db, cfg.PaymentTimeout)
	var orderLifecycle flashorder.OrderLifecycle = lifecycle
	if path.gate != nil {
		orderLifecycle = path.gate.Lifecycle(lifecycle)
	}
	var authenticator flashorder.Authenticator
	if auth != nil {
		authenticator = auth
	}
	room, roomMetrics, err := m.startRoom(db, cfg.roomCatalog(path))
	if err != nil {
		return err
	}
	m.room = room
	ipLimit, err := m.ipLimiter(proxies)
	if err != nil {
		return err
	}
	m.server = orderhttp.NewServer(orderhttp.Config{
		Store: path.store, Orders: path.orders, Products: path.products, AdminToken: cfg.AdminToken,
		Logger: m.Logger, Lifecycle: orderLifecycle, PaymentWebhookSecret: cfg.PaymentWebhookSecret,
		MaxInflight: cfg.MaxInflight, OrderTimeout: cfg.OrderTimeout, Authenticator: authenticator, RateLimiter: limiter,
		Room: m.room, IPLimit: ipLimit, TrustedProxies: proxies, Challenge: challenge,
	})
	addReadyChecks(m.server, db, m.redisClients, m.lock)
	if err := instrument(m.server.Registry(), measure, path.gate, strategy.registerMetrics); err != nil {
		return err
	}
	if err := roomMetrics.Register(m.server.Registry()); err != nil {
		return err
	}
	sweepLocker := m.SweeperLocker
	if sweepLocker == nil {
		sweepLocker = m.lock.locker
	}
	m.sweeper, err = m.startSweeper(lifecycle, measure.wrap(sweepLocker), m.server.Registry())
	if err != nil {
		return err
	}
	if m.relay, err = m.startRelay(db, measure.wrap(sweepLocker), m.server.Registry()); err != nil {
		return err
	}
	if err := m.server.Open(cfg.Listen); err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if cfg.DebugListen != "" {
		if m.debug, err = m.openDebug(cfg.DebugListen); err != nil {
			return err
		}
	}
	m.logListening(db)
	return nil
}

// addReadyChecks makes /readyz check every Redis in use and the lock
// service, and name the PostgreSQL server orderd writes to.
func addReadyChecks(server *orderhttp.Server, db *gormdb.DB, clients redisClients, lock *lockBackend) {
	for u, c := range clients {
		name := "redis"
		if len(clients) > 1 {
			name = "redis " + redactURL(u)
		}
		server.AddReadyCheck(name, func(ctx context.Context) error {
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis %s: %w", redactURL(u), err)
			}
			return nil
		})
	}
	if lock.ping != nil {
		server.AddReadyCheck("lock", lock.ping)
	}
	if db.Engine() == gormdb.Postgres {
		server.AddReadyInfo("db_writes_to", dbWritesTo(db))
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
	if m.sweeper != nil {
		// It steps down and unlocks before the lock backend closes.
		m.sweeper.Stop()
	}
	if m.relay != nil {
		m.relay.Stop()
	}
	if m.room != nil {
		m.room.Stop()
	}
	if m.queueClient != nil {
		errs = append(errs, m.queueClient.Close())
	}
	if m.ipClient != nil {
		errs = append(errs, m.ipClient.Close())
	}
	if m.eventsSink != nil {
		errs = append(errs, m.eventsSink.Close())
	}
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
func (m *Main) openDebug(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", redactedCmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: orderhttp.ReadHeaderTimeout}
	go func() { _ = srv.Serve(ln) }()
	m.Logger.Info("pprof listening", "addr", ln.Addr().String())
	return srv, nil
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
