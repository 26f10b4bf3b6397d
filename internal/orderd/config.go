package orderd

// This file is orderd's configuration: the flags, their defaults and
// variables, and Validate, which checks a Config whole before Run opens
// anything.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/redis"
	"github.com/flashorder/flashorder/relay"
)

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

	TrustedProxies     string
	IPRateLimit        string
	IPRateLimitBurst   int
	ChallengeVerifyURL string
	ChallengeSecret    string

	QueueStore        string
	AdmissionSecret   string
	AdmissionTTL      time.Duration
	QueueIdle         time.Duration
	AdmissionInterval time.Duration

	Events            string
	EventsSecret      string
	EventsMaxAttempts int
	EventsRetention   time.Duration
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
	fs.DurationVar(&cfg.DBLockTimeout, "db-lock-timeout", DefaultDBLockTimeout, "PostgreSQL and MySQL/MariaDB: a statement waiting this long for a row lock gives up and its transaction is retried within --order-timeout; below --db-idle-tx-timeout when both are set (MySQL/MariaDB: whole seconds; 0: the database's default)")
	fs.DurationVar(&cfg.DBKeepAlive, "db-keepalive", DefaultDBKeepAlive, "PostgreSQL: TCP keepalive and user timeout of the server side of orderd's connections, so that the sessions of a cut-off orderd end (0: the server's default)")
	fs.StringVar(&cfg.Strategy, "strategy", "batch", "stock deduction strategy: batch, row, segment or lock")
	fs.IntVar(&cfg.BatchMax, "batch-max", checkout.DefaultMaxBatch, "batch strategy: most orders in one transaction")
	fs.IntVar(&cfg.BatchQueue, "batch-queue", checkout.DefaultMaxQueue, "batch strategy: most orders waiting for a batch before 503 overloaded")
	fs.IntVar(&cfg.BatchPipeline, "batch-pipeline", 0, "batch strategy: batch transactions in flight at once (0: 2, or 1 on SQLite; SQLite takes at most 1)")
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
	fs.StringVar(&cfg.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs or IPs of the proxies whose X-Forwarded-For names the client (the right-most entry that is not one of them); empty: the TCP peer is the client")
	fs.StringVar(&cfg.IPRateLimit, "ip-rate-limit", "", "waiting-room joins and orders per client IP (an IPv6 /64; an order with an admission token does not count), N/s, N/m or N/h; in --rate-limit-store (empty: off)")
	fs.IntVar(&cfg.IPRateLimitBurst, "ip-rate-limit-burst", 0, "requests a client IP may burst above --ip-rate-limit (0: the rate's N)")
	fs.StringVar(&cfg.ChallengeVerifyURL, "challenge-verify-url", "", "a siteverify endpoint (Cloudflare Turnstile, hCaptcha) that checks the Challenge-Token header of every waiting-room join; fails closed (empty: no challenge)")
	fs.StringVar(&cfg.ChallengeSecret, "challenge-secret", "", "--challenge-verify-url: the provider's secret key")
	fs.StringVar(&cfg.QueueStore, "queue-store", "", "waiting room state (products with admission queue): memory, redis://host:port/db or a Redis Cluster, redis+cluster://host:port[,host:port...]/ (the only Redis flag that takes a cluster; empty: the --idempotency Redis, else memory)")
	fs.StringVar(&cfg.AdmissionSecret, "admission-secret", "", "HS256 key, at least 32 bytes, that signs the waiting room's admission tokens; every instance on one --queue-store needs the same (empty: a random key for this process, good for one instance only)")
	fs.DurationVar(&cfg.AdmissionTTL, "admission-ttl", queue.DefaultAdmissionTTL, "how long an admission token stays good unused; then its place goes to the next buyer")
	fs.DurationVar(&cfg.QueueIdle, "queue-idle", queue.DefaultIdleTimeout, "a waiting ticket not polled for this long leaves the queue")
	fs.DurationVar(&cfg.AdmissionInterval, "admission-interval", queue.DefaultAdmitInterval, "how often each instance admits the next buyers of the queues it serves")
	fs.StringVar(&cfg.Events, "events", "", "publish every order change as a CloudEvent to this sink: a webhook, https://host/path (or http:// on loopback), or NATS JetStream, nats://host:port[,host:port]/subject-prefix (subjects <prefix>.<type>, stream created R3 on a 3-node cluster); the outbox is written in each change's transaction (off when empty)")
	fs.StringVar(&cfg.EventsSecret, "events-secret", "", "--events: the webhooks' Standard Webhooks signing secret, whsec_ and base64 of at least 24 bytes (none with nats://)")
	fs.DurationVar(&cfg.EventsRetention, "events-retention", relay.DefaultRetention, "--events: how long delivered events stay in the outbox and the admin feed before the relay deletes them (0: forever)")
	fs.IntVar(&cfg.EventsMaxAttempts, "events-max-attempts", relay.DefaultMaxAttempts, "--events: delivery attempts of one event, with exponential backoff, before it becomes a dead letter")
	return fs
}

// EnvName returns the environment variable for a flag: ORDERD_ and the flag
// name in upper case with - turned into _.
func EnvName(flagName string) string {
	return "ORDERD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Zero values, one rule (docs/DESIGN.md, Conventions): a count or duration
// whose help states "(0: ...)" takes 0 as that meaning (off, no bound, or
// a value another setting decides); any other must be positive. Negative is
// never valid. Validate refuses what the rule refuses, so the Options
// structs orderd fills never see a 0 it did not mean.

// Validate checks the configuration whole, before Run opens anything: each
// flag's form and range, the backends' URL schemes, and the relations
// between flags. It returns every problem found, joined, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.Listen == "" {
		bad("--listen is empty")
	}
	switch c.Strategy {
	case "batch", "row", "segment", "lock":
	default:
		bad("--strategy %q is not supported (want batch, row, segment or lock)", c.Strategy)
	}
	engine, err := dbEngine(c.DB)
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := parseLock(c.Lock); err != nil {
		errs = append(errs, err)
	}
	if err := checkStore("--idempotency", c.Idempotency, false); err != nil {
		errs = append(errs, err)
	}
	if c.RateLimitUser != "" {
		if _, _, err := parseRate(c.RateLimitUser); err != nil {
			bad("--rate-limit-user: %w", err)
		}
	}
	if c.RateLimitStore != "" {
		if err := checkStore("--rate-limit-store", c.RateLimitStore, false); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.validateBots()...)
	if c.QueueStore != "" {
		if err := checkStore("--queue-store", c.QueueStore, true); err != nil {
			errs = append(errs, err)
		}
	}
	if c.AdmissionSecret != "" && len(c.AdmissionSecret) < queue.MinSecretLen {
		bad("--admission-secret must be at least %d bytes, not %d", queue.MinSecretLen, len(c.AdmissionSecret))
	}
	errs = append(errs, c.validateAuth()...)
	errs = append(errs, c.validateEvents()...)
	if _, err := c.logHandler(io.Discard); err != nil {
		errs = append(errs, err)
	}

	// Ranges: positive where 0 has no meaning, at least 0 where it has one.
	for _, f := range []struct {
		name string
		v    int64
		zero bool // 0 is valid (the help says what it means)
		dur  bool
	}{
		{"--db-max-conns", int64(c.DBMaxConns), false, false},
		{"--db-idle-tx-timeout", int64(c.DBIdleTxTimeout), true, true},
		{"--db-lock-timeout", int64(c.DBLockTimeout), true, true},
		{"--db-keepalive", int64(c.DBKeepAlive), true, true},
		{"--batch-max", int64(c.BatchMax), false, false},
		{"--batch-queue", int64(c.BatchQueue), false, false},
		{"--batch-pipeline", int64(c.BatchPipeline), true, false},
		{"--segments", int64(c.Segments), false, false},
		{"--idempotency-retention", int64(c.IdempotencyRetention), false, true},
		{"--idempotency-max-keys", int64(c.IdempotencyMaxKeys), true, false},
		{"--idempotency-claim-ttl", int64(c.IdempotencyClaimTTL), false, true},
		{"--rate-limit-burst", int64(c.RateLimitBurst), true, false},
		{"--order-timeout", int64(c.OrderTimeout), true, true},
		{"--max-inflight", int64(c.MaxInflight), true, false},
		{"--sold-out-ttl", int64(c.SoldOutTTL), true, true},
		{"--product-cache-ttl", int64(c.ProductCacheTTL), true, true},
		{"--shutdown-timeout", int64(c.ShutdownTimeout), false, true},
		{"--payment-timeout", int64(c.PaymentTimeout), false, true},
		{"--sweep-interval", int64(c.SweepInterval), false, true},
		{"--sweep-batch", int64(c.SweepBatch), false, false},
		{"--ip-rate-limit-burst", int64(c.IPRateLimitBurst), true, false},
		{"--admission-ttl", int64(c.AdmissionTTL), false, true},
		{"--queue-idle", int64(c.QueueIdle), false, true},
		{"--admission-interval", int64(c.AdmissionInterval), false, true},
		{"--events-max-attempts", int64(c.EventsMaxAttempts), false, false},
		{"--events-retention", int64(c.EventsRetention), true, true},
	} {
		if f.v > 0 || (f.v == 0 && f.zero) {
			continue
		}
		shown := strconv.FormatInt(f.v, 10)
		if f.dur {
			shown = time.Duration(f.v).String()
		}
		if f.zero {
			bad("%s must not be negative, not %s", f.name, shown)
		} else {
			bad("%s must be positive, not %s", f.name, shown)
		}
	}

	// Relations between flags.
	if c.DBLockTimeout > 0 && c.DBIdleTxTimeout > 0 && c.DBLockTimeout >= c.DBIdleTxTimeout {
		bad("--db-lock-timeout (%s) must be below --db-idle-tx-timeout (%s): the sessions of a frozen orderd waiting for a row must give up before the database frees it", c.DBLockTimeout, c.DBIdleTxTimeout)
	}
	if engine == gormdb.SQLite && c.BatchPipeline > 1 {
		bad("--batch-pipeline %d on SQLite: its one connection runs one transaction at a time (leave it 0, or 1)", c.BatchPipeline)
	}
	return errors.Join(errs...)
}

// validateAuth checks --auth and the --jwt-* flags that go with it.
func (c Config) validateAuth() []error {
	jwtFlags := c.JWTSecret != "" || c.JWTJWKS != "" || c.JWTIssuer != "" || c.JWTAudience != ""
	switch c.Auth {
	case "none":
		if jwtFlags {
			return []error{errors.New("--jwt-* flags need --auth jwt")}
		}
	case "jwt":
		if (c.JWTSecret == "") == (c.JWTJWKS == "") {
			return []error{errors.New("--auth jwt needs exactly one of --jwt-secret and --jwt-jwks")}
		}
	default:
		return []error{fmt.Errorf("--auth %q is not supported (want none or jwt)", c.Auth)}
	}
	return nil
}

// validateBots checks the bot defences' flags: --trusted-proxies,
// --ip-rate-limit and the challenge.
func (c Config) validateBots() []error {
	var errs []error
	if _, err := orderhttp.ParseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxies: %w", err))
	}
	if c.IPRateLimit != "" {
		if _, _, err := parseRate(c.IPRateLimit); err != nil {
			errs = append(errs, fmt.Errorf("--ip-rate-limit: %w", err))
		}
	} else if c.IPRateLimitBurst != 0 {
		errs = append(errs, errors.New("--ip-rate-limit-burst needs --ip-rate-limit"))
	}
	switch {
	case c.ChallengeVerifyURL == "" && c.ChallengeSecret != "":
		errs = append(errs, errors.New("--challenge-secret needs --challenge-verify-url"))
	case c.ChallengeVerifyURL != "":
		if _, err := orderhttp.NewChallengeVerifier(c.ChallengeVerifyURL, c.ChallengeSecret); err != nil {
			errs = append(errs, fmt.Errorf("--challenge-verify-url: %w", err))
		}
	}
	return errs
}

// validateEvents checks --events and the flags that go with it.
func (c Config) validateEvents() []error {
	if c.Events == "" {
		if c.EventsSecret != "" {
			return []error{errors.New("--events-secret needs --events")}
		}
		return nil
	}
	if strings.HasPrefix(c.Events, "nats://") {
		var errs []error
		if _, _, err := relay.ParseNATSURL(c.Events); err != nil {
			errs = append(errs, fmt.Errorf("--events: %w", err))
		}
		if c.EventsSecret != "" {
			errs = append(errs, errors.New("--events-secret is the webhooks' signing secret; a nats:// sink takes none"))
		}
		return errs
	}
	var errs []error
	if err := relay.CheckWebhookURL(c.Events); err != nil {
		errs = append(errs, fmt.Errorf("--events: %w", err))
	}
	if _, err := relay.ParseSecret(c.EventsSecret); err != nil {
		errs = append(errs, fmt.Errorf("--events-secret (needed with --events): %w", err))
	}
	return errs
}

// logHandler returns the slog handler of --log-format and --log-level
// writing to w.
func (c Config) logHandler(w io.Writer) (slog.Handler, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
}

// dbEngine returns the engine a --db URL names (gormdb.SQLite, Postgres or
// MySQL).
func dbEngine(raw string) (string, error) {
	u, err := parseURL("--db", raw)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case gormdb.SQLite:
		return gormdb.SQLite, nil
	case gormdb.Postgres, "postgresql":
		return gormdb.Postgres, nil
	case gormdb.MySQL, "mariadb":
		return gormdb.MySQL, nil
	}
	return "", fmt.Errorf("--db %q is not supported (want sqlite://, postgres:// or mysql://)", redactURL(raw))
}

// checkStore checks a flag that names memory or a Redis URL; with cluster,
// also a Redis Cluster URL (redis+cluster://host:port,host:port/).
func checkStore(flagName, raw string, cluster bool) error {
	if raw == "memory" {
		return nil
	}
	u, err := parseURL(flagName, raw)
	if err != nil {
		return err
	}
	if redis.IsClusterURL(raw) {
		if !cluster {
			return fmt.Errorf("%s %s: a Redis Cluster (%s://) is supported by --queue-store only; %s needs one Redis, redis://host:port/db",
				flagName, redactURL(raw), u.Scheme, flagName)
		}
		if _, err := redis.ParseClusterURL(raw); err != nil {
			return fmt.Errorf("%s %s: %w", flagName, redactURL(raw), err)
		}
		return nil
	}
	if u.Scheme != "redis" {
		want := "memory or redis://host:port/db"
		if cluster {
			want = "memory, redis://host:port/db or redis+cluster://host:port,host:port/"
		}
		return fmt.Errorf("%s %q is not supported (want %s)", flagName, redactURL(raw), want)
	}
	if _, err := goredis.ParseURL(raw); err != nil {
		return fmt.Errorf("%s %s: %w", flagName, redactURL(raw), err)
	}
	return nil
}

// parseURL parses a flag's URL; its error leaves the URL out, which may hold
// a password.
func parseURL(flagName, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: not a URL: %w", flagName, err)
	}
	return u, nil
}

// lockURL is a parsed --lock value:
//
//	memory
//	zk://host:port[,host:port...]/prefix[?session_timeout=10s]
//	etcd://host:port[,host:port...]/prefix[?ttl=10s]
//	redis://[user:pass@]host:port/db[?ttl=10s]
type lockURL struct {
	// kind is memory, zk, etcd or redis.
	kind   string
	hosts  []string
	prefix string
	// ttl is session_timeout (zk) or ttl (etcd, redis); 0 when not given:
	// the backend's default.
	ttl time.Duration
	// redis is the Redis URL without orderd's own parameters: the client
	// the lock shares with the flags that name the same Redis.
	redis string
}

// parseLock parses and checks a --lock value, without connecting.
func parseLock(raw string) (lockURL, error) {
	if raw == "memory" {
		return lockURL{kind: raw}, nil
	}
	u, err := parseURL("--lock", raw)
	if err != nil {
		return lockURL{}, err
	}
	l := lockURL{kind: u.Scheme, hosts: strings.Split(u.Host, ","), prefix: u.Path}
	q := u.Query()
	ttlParam := "ttl"
	switch u.Scheme {
	case "zk":
		ttlParam = "session_timeout"
	case "etcd", "redis":
	case redis.ClusterScheme, redis.ClusterTLSScheme:
		return lockURL{}, fmt.Errorf("--lock %s: a Redis Cluster (%s://) is supported by --queue-store only; --lock needs one Redis, redis://host:port/db", redactURL(raw), u.Scheme)
	default:
		return lockURL{}, fmt.Errorf("--lock %q is not supported (want memory, zk://, etcd:// or redis://)", redactURL(raw))
	}
	if v := q.Get(ttlParam); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return lockURL{}, fmt.Errorf("--lock: %s=%q is not a positive duration", ttlParam, v)
		}
		l.ttl = d
	}
	q.Del(ttlParam)
	if l.kind == "redis" {
		u.RawQuery = q.Encode()
		l.redis = u.String()
		if _, err := goredis.ParseURL(l.redis); err != nil {
			return lockURL{}, fmt.Errorf("--lock %s: %w", redactURL(raw), err)
		}
		return l, nil
	}
	for k := range q {
		return lockURL{}, fmt.Errorf("--lock: unknown parameter %q", k)
	}
	return l, nil
}

// scheme returns the backend kind of a flag value: "memory", or a URL's scheme.
func scheme(v string) string {
	if v == "memory" {
		return v
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" {
		return u.Scheme
	}
	return v
}

// redactURL drops the password from a URL for logs and errors.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// parseRate parses "N/s", "N/m" or "N/h" (N >= 1).
func parseRate(v string) (int, time.Duration, error) {
	num, unit, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not N/s, N/m or N/h", v)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("%q: N must be a positive integer", v)
	}
	switch unit {
	case "s":
		return n, time.Second, nil
	case "m":
		return n, time.Minute, nil
	case "h":
		return n, time.Hour, nil
	}
	return 0, 0, fmt.Errorf("%q: the period must be s, m or h", v)
}
