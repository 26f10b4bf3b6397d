// Package loadtest is the load engine behind cmd/orderbench: it drives an
// order API with a closed loop (N clients, optional think time) or an open
// loop (a fixed request rate, latency measured from each request's intended
// send time), records latency in HdrHistograms and answers by status and error
// code, and after every run audits the server: every 201 the client saw must
// exist with the same user and items, stock taken must equal what the 201s
// took, per-user limits must hold and no order may answer two keys; with
// Config.Events, every 201 must have its order.created among the order events
// orderd published, each order's events without a gap (events.go). Its
// Result is told by loadtest/report (headline, summary, HTML, CSV, .hgrm).
package loadtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/jwtauth"
)

// ErrAuditFailed is returned (wrapped) by Run when the after-run audit found a
// violation; the Result describes them.
var ErrAuditFailed = errors.New("loadtest: audit failed")

// Scenario is what the simulated shoppers order. NamedScenario returns the
// scenarios of the benchmark tables.
type Scenario struct {
	// Name is the named scenario (see NamedScenario) this one was made from,
	// for reports; "" when it was built from flags or fields alone. Fields
	// set after NamedScenario may differ from the name's values.
	Name string `json:"name,omitempty"`
	// SKUs is the number of products; 1 is one hot SKU. The default is 1.
	SKUs int `json:"skus"`
	// SKUPrefix names the products: SKUPrefix0, SKUPrefix1, ... The default
	// is "bench-". The run resets these products at setup.
	SKUPrefix string `json:"sku_prefix"`
	// Stock is each product's stock at setup; the default is 1,000,000.
	Stock int64 `json:"stock"`
	// PriceCents is each product's price; the default is 1999.
	PriceCents int64 `json:"price_cents"`
	// PerUserLimit is each product's per-user limit; 0 means none.
	PerUserLimit int64 `json:"per_user_limit"`
	// Zipf, when > 1, picks SKUs with a Zipf distribution of this exponent
	// (SKU 0 the hottest); otherwise SKUs are picked uniformly.
	Zipf float64 `json:"zipf,omitempty"`
	// MultiShare is the share (0..1) of orders with several items.
	MultiShare float64 `json:"multi_share,omitempty"`
	// MultiItems is the number of distinct SKUs in a multi-item order; the
	// default is 2 (capped at SKUs).
	MultiItems int `json:"multi_items,omitempty"`
	// Quantity is the quantity of every item; the default is 1.
	Quantity int64 `json:"quantity"`
	// Users is the size of the user pool; 0 gives every order its own user.
	Users int `json:"users"`
	// RetryShare is the share (0..1) of requests that resend the worker's
	// previous request with the same Idempotency-Key.
	RetryShare float64 `json:"retry_share,omitempty"`
	// NoKeys sends orders without an Idempotency-Key. By default every order
	// carries a fresh key. Retries (RetryShare) need keys.
	NoKeys bool `json:"no_keys,omitempty"`

	// Lead, when > 0, makes the run a drop (see the file drop.go): the
	// product's sale opens Lead after the run starts, at T0, and Users
	// shoppers arrive over the lead to buy it, instead of a closed or an
	// open loop. NamedScenario("drop") sets 10s.
	Lead time.Duration `json:"lead,omitempty"`
	// ClockSkew is how far a drop's users' clocks are off at most: each
	// user's by an amount spread evenly over -ClockSkew..+ClockSkew. 0:
	// every clock is right.
	ClockSkew time.Duration `json:"clock_skew,omitempty"`
	// After is how long a drop's user who was told sold_out goes on
	// reloading the page and ordering again. 0: it gives up at once.
	After time.Duration `json:"after,omitempty"`
	// Refresh is how often such a user reloads (give or take half of it);
	// the default is 1s.
	Refresh time.Duration `json:"refresh,omitempty"`

	// Admission "queue" sells a drop's product through orderd's waiting
	// room (see the file queuedrop.go); "" or "open" without it.
	Admission string `json:"admission,omitempty"`
	// Bots is the share (0..1) of a drop's Users that are bots, each with
	// BotIDs user ids (default 5) that poll every BotPoll (default 100ms).
	Bots    float64       `json:"bots,omitempty"`
	BotIDs  int           `json:"bot_ids,omitempty"`
	BotPoll time.Duration `json:"bot_poll,omitempty"`
	// LateShare is the share (0..1) of a drop's buyers (not bots) who
	// arrive after T0, evenly over Late (default: Lead), instead of before.
	LateShare float64       `json:"late_share,omitempty"`
	Late      time.Duration `json:"late,omitempty"`
}

// IsDrop reports whether the scenario is a drop (Lead > 0).
func (s Scenario) IsDrop() bool { return s.Lead > 0 }

// Config is one run.
type Config struct {
	// URLs are the servers' base URLs; requests go round-robin.
	URLs []string `json:"urls"`
	// AdminToken is the bearer token for setup and audit.
	AdminToken string `json:"-"`
	// JWTSecret, when set, is the HS256 key of an orderd running with auth
	// jwt: each simulated user gets a token, minted once at the start and
	// sent with each of its orders. Users 0 then means one user per client
	// (a token per order would measure the minting). JWTIssuer and
	// JWTAudience become the tokens' iss and aud when set.
	JWTSecret   string `json:"-"`
	JWTIssuer   string `json:"-"`
	JWTAudience string `json:"-"`
	// Auth records that the run sent users' tokens (JWTSecret was set).
	Auth bool `json:"auth,omitempty"`
	// Concurrency is the number of clients in the closed loop, and the
	// maximum of requests in flight in the open loop. The default is 50.
	Concurrency int `json:"concurrency"`
	// Rate, when > 0, runs an open loop at this many requests per second.
	Rate float64 `json:"rate,omitempty"`
	// Sticky makes each client send every order to one of URLs (client i
	// to URL i mod len(URLs)) instead of the next URL each time. A fault
	// test uses it to see what the other instances do while one is stuck:
	// rotating closed-loop clients would all end up waiting on that one.
	Sticky bool `json:"sticky,omitempty"`
	// Think is the pause of each closed-loop client between requests.
	Think time.Duration `json:"think,omitempty"`
	// Duration is the measured time; the default is 10s unless Requests is
	// set. In a drop it bounds the sale after T0 (default
	// DefaultDropDuration): users still trying then stop.
	Duration time.Duration `json:"duration,omitempty"`
	// Requests, when > 0, ends the run after this many requests sent after
	// the warmup (the measured requests).
	Requests int64 `json:"requests,omitempty"`
	// Warmup is load before the measurement starts: requests sent during
	// it are audited but not counted in the summary (they are in the time
	// series, marked as warmup).
	Warmup time.Duration `json:"warmup,omitempty"`
	// Timeout bounds each request; the default is 10s.
	Timeout time.Duration `json:"timeout"`
	// Stop, when closed, ends a closed-loop run's load before Duration, as
	// Duration's end would (the audit still runs). Fault tests use it to end
	// the load once a fault sequence of unknown length is over.
	Stop <-chan struct{} `json:"-"`
	// LateThreshold is how late an open-loop request may leave and still be
	// on time; the default is 1ms.
	LateThreshold time.Duration `json:"late_threshold,omitempty"`
	// AuditSample is how many 201s the audit reads back with GET
	// /orders/{id}; 0 means the default 20,000, a negative value all.
	AuditSample int `json:"audit_sample"`
	// NoServer skips setup and audit: the target is not an orderd (the no-op
	// ceiling).
	NoServer bool `json:"no_server,omitempty"`
	// Scenario is what is ordered.
	Scenario Scenario `json:"scenario"`
	// Progress, when set, receives a progress line once a second; Terminal
	// makes it one updating line.
	Progress io.Writer `json:"-"`
	// Terminal reports whether Progress is a terminal.
	Terminal bool `json:"-"`
	// StdHTTP makes the hot loop use net/http instead of the built-in
	// HTTP/1.1 client (which is used for plain http URLs otherwise).
	StdHTTP bool `json:"std_http,omitempty"`
	// Label names the run in reports.
	Label string `json:"label,omitempty"`
	// Bucket is the length of the time series' intervals. The default is
	// sized to the run: 10ms for runs up to 1s, 100ms up to 30s, 1s up to
	// 10 minutes, 5s beyond. A run bounded by Requests alone, whose length
	// is not known in advance, starts with 10ms buckets and moves to the
	// next size as it passes each of those lengths.
	Bucket time.Duration `json:"bucket,omitempty"`
	// Stages ramp the load (see Stage): the number of active clients in the
	// closed loop, the request rate in the open loop (Rate > 0 then only
	// selects the open loop). The run lasts as long as the stages (Duration
	// is set to their sum); Requests cannot be combined with them.
	Stages []Stage `json:"stages,omitempty"`
	// OnAnswer, when set, is called with every answer (warmup included), from
	// many goroutines at once: it must be safe for concurrent use and fast,
	// since it runs on the hot path. Fault tests use it to time outages and
	// to tell the targets' answers apart.
	OnAnswer func(AnswerEvent) `json:"-"`
	// Events, when set, is where orderd publishes its order events (its
	// --events): nats://host:port[,host:port]/subject-prefix. The run
	// consumes them from its start, and the audit checks them against the
	// 201s (see EventsAudit) once the relay delivered them.
	Events string `json:"events,omitempty"`
	// EventsReceiver, when set, receives orderd's events as its webhook
	// sink instead (orderd's --events is its URL), and the audit checks
	// those; Events then only names it in reports.
	EventsReceiver *WebhookReceiver `json:"-"`
	// EventsWait bounds the wait after the load for the relay to deliver
	// the run's events; the default is DefaultEventsWait.
	EventsWait time.Duration `json:"events_wait,omitempty"`
	// EventsPay and EventsCancel are the shares (0..1, their sum at most
	// 1) of the run's 201s that the audit pays and cancels after the load,
	// before it waits for the events, so that every transition the client
	// got a 200 for is checked to have its event (EventsAudit). They need
	// Events; the default is 0, none.
	EventsPay    float64 `json:"events_pay,omitempty"`
	EventsCancel float64 `json:"events_cancel,omitempty"`
}

// The values Config.defaults gives zero fields; orderbench's flags show the
// same ones.
const (
	DefaultConcurrency   = 50
	DefaultDuration      = 10 * time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultLateThreshold = time.Millisecond
	DefaultAuditSample   = 20000
	DefaultSKUs          = 1
	DefaultSKUPrefix     = "bench-"
	DefaultStock         = 1_000_000
	DefaultPriceCents    = 1999
	DefaultQuantity      = 1
	DefaultMultiItems    = 2
	DefaultRefresh       = time.Second
	// DefaultDropDuration bounds a drop's sale after T0: a drop ends when
	// its users are done, this only stops one whose server is too slow.
	DefaultDropDuration = time.Minute
)

func (c *Config) defaults() error {
	if len(c.URLs) == 0 {
		return errors.New("loadtest: no target URL")
	}
	for i, u := range c.URLs {
		c.URLs[i] = strings.TrimRight(u, "/")
	}
	if len(c.Stages) > 0 {
		if c.Requests > 0 {
			return errors.New("loadtest: stages set the run's length; they cannot be combined with a request count")
		}
		c.Duration = StagesDuration(c.Stages)
		if c.Rate <= 0 {
			c.Concurrency = int(math.Ceil(StagesMax(c.Stages)))
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	c.Auth = c.JWTSecret != ""
	switch {
	case c.Duration > 0 || c.Requests > 0:
	case c.Scenario.IsDrop():
		c.Duration = DefaultDropDuration
	default:
		c.Duration = DefaultDuration
	}
	if c.Bucket <= 0 && c.Duration > 0 {
		run := c.Warmup + c.Duration
		if c.Scenario.IsDrop() {
			// A drop ends when its users are done, mostly long before
			// Duration: the lead and about as long after T0.
			run = c.Scenario.Lead + c.Scenario.After + 10*time.Second
		}
		c.Bucket = defaultBucket(run)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.LateThreshold <= 0 {
		c.LateThreshold = DefaultLateThreshold
	}
	if c.AuditSample == 0 {
		c.AuditSample = DefaultAuditSample
	}
	if c.EventsWait <= 0 {
		c.EventsWait = DefaultEventsWait
	}
	if (c.Events != "" || c.EventsReceiver != nil) && c.NoServer {
		return errors.New("loadtest: events are audited against orderd: they cannot be combined with no server")
	}
	switch {
	case !(c.EventsPay >= 0 && c.EventsPay <= 1):
		return fmt.Errorf("loadtest: events pay share %v is not in 0..1", c.EventsPay)
	case !(c.EventsCancel >= 0 && c.EventsCancel <= 1):
		return fmt.Errorf("loadtest: events cancel share %v is not in 0..1", c.EventsCancel)
	case c.EventsPay+c.EventsCancel > 1:
		return fmt.Errorf("loadtest: events pay share %v and cancel share %v add up to more than 1", c.EventsPay, c.EventsCancel)
	case c.EventsPay+c.EventsCancel > 0 && c.Events == "" && c.EventsReceiver == nil:
		return errors.New("loadtest: events pay and cancel shares are checked against the events: they need events")
	}
	s := &c.Scenario
	if s.SKUs <= 0 {
		s.SKUs = DefaultSKUs
	}
	if s.SKUPrefix == "" {
		s.SKUPrefix = DefaultSKUPrefix
	}
	if s.Stock <= 0 {
		s.Stock = DefaultStock
	}
	if s.PriceCents <= 0 {
		s.PriceCents = DefaultPriceCents
	}
	if s.Quantity <= 0 {
		s.Quantity = DefaultQuantity
	}
	if s.MultiItems <= 1 {
		s.MultiItems = DefaultMultiItems
	}
	if s.MultiItems > s.SKUs {
		s.MultiItems = s.SKUs
	}
	switch {
	case s.MultiShare < 0 || s.MultiShare > 1:
		return fmt.Errorf("loadtest: multi-item share %v is not in 0..1", s.MultiShare)
	case s.RetryShare < 0 || s.RetryShare > 1:
		return fmt.Errorf("loadtest: retry share %v is not in 0..1", s.RetryShare)
	case s.Zipf != 0 && s.Zipf <= 1:
		return fmt.Errorf("loadtest: zipf exponent %v must be > 1 (0 for uniform)", s.Zipf)
	case s.Quantity > flashorder.MaxQuantity:
		return fmt.Errorf("loadtest: quantity %d is over %d", s.Quantity, flashorder.MaxQuantity)
	case s.MultiShare > 0 && s.SKUs < 2:
		return errors.New("loadtest: multi-item orders need at least 2 SKUs")
	case s.NoKeys && s.RetryShare > 0:
		return errors.New("loadtest: retries resend an Idempotency-Key: a retry share needs keys")
	}
	if s.IsDrop() {
		return c.dropDefaults()
	}
	if s.Lead < 0 || s.ClockSkew != 0 || s.After != 0 || s.Refresh != 0 {
		return errors.New("loadtest: lead, clock skew, after and refresh describe a drop: set a lead > 0 (or use the drop scenario)")
	}
	return nil
}

// dropDefaults checks a drop's configuration: a drop brings its own load
// (its users), sells one SKU, and needs orderd behind the target.
func (c *Config) dropDefaults() error {
	s := &c.Scenario
	if s.Refresh <= 0 {
		s.Refresh = DefaultRefresh
	}
	var with []string
	for _, f := range []struct {
		set  bool
		name string
	}{
		{c.Rate > 0, "a rate"}, {len(c.Stages) > 0, "stages"}, {c.Requests > 0, "a request count"}, {c.Warmup > 0, "a warmup"},
		{c.Think > 0, "think time"}, {c.NoServer, "no server"}, {s.RetryShare > 0, "a retry share"}, {s.MultiShare > 0, "carts"},
	} {
		if f.set {
			with = append(with, f.name)
		}
	}
	switch {
	case len(with) > 0:
		return fmt.Errorf("loadtest: a drop brings its own load (its users): it cannot be combined with %s", strings.Join(with, ", "))
	case s.SKUs != 1:
		return fmt.Errorf("loadtest: a drop sells one SKU, not %d", s.SKUs)
	case s.Users <= 0:
		return errors.New("loadtest: a drop needs users (--users)")
	case s.ClockSkew < 0 || s.After < 0:
		return errors.New("loadtest: a drop's clock skew and after must not be negative")
	case s.Admission != "" && s.Admission != AdmissionOpen && s.Admission != AdmissionQueue:
		return fmt.Errorf("loadtest: admission %q is not open or queue", s.Admission)
	case s.Bots < 0 || s.Bots > 1 || s.LateShare < 0 || s.LateShare > 1:
		return errors.New("loadtest: the bots' and the late buyers' shares must be in 0..1")
	case (s.Admission == AdmissionQueue || s.Bots > 0) && c.JWTSecret != "":
		return errors.New("loadtest: a drop with a queue or bots makes up its users' ids: it runs with auth none (no JWT secret)")
	}
	if s.Admission == AdmissionOpen {
		s.Admission = ""
	}
	if s.Bots > 0 {
		if s.BotIDs <= 0 {
			s.BotIDs = DefaultBotIDs
		}
		if s.BotPoll <= 0 {
			s.BotPoll = DefaultBotPoll
		}
	}
	if s.Late <= 0 {
		s.Late = s.Lead
	}
	return nil
}

// defaultBucket sizes the time series' intervals to a run of length run:
// from a few dozen points for a short run to a few hundred for a long one.
func defaultBucket(run time.Duration) time.Duration {
	switch {
	case run <= time.Second:
		return 10 * time.Millisecond
	case run <= 30*time.Second:
		return 100 * time.Millisecond
	case run <= 10*time.Minute:
		return time.Second
	default:
		return 5 * time.Second
	}
}

// NewTransport returns an HTTP transport tuned for load: enough idle
// connections per host for every client, no compression, short dial timeout.
func NewTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// runner is the state of one run shared by its workers. Only atomics and the
// per-shard mutexes are touched on the hot path.
type runner struct {
	cfg          Config
	runID        string
	client       *http.Client
	skus         []string
	singleItems  [][]flashorder.ItemRequest
	users        []string
	auths        []string // "Bearer <token>" of each user, with JWTSecret
	shards       []*shard
	start        time.Time
	measureStart time.Time
	stopAt       time.Time // zero: no time limit
	claimed      atomic.Int64
	soldByClient []atomic.Int64 // units per SKU in 201s, for the live stock estimate
	// soldOutAt is, per SKU, when (ns since start, +1) the client's 201s
	// took its last unit; 0 while some is left.
	soldOutAt []atomic.Int64
	// drop is a drop's plan and state; nil in other runs.
	drop *dropRun
	// events consumes the run's order events (Config.Events); nil without.
	events *eventsRun
}

// took accounts q units of SKU i taken by a 201 answered at done, and notes
// the moment the SKU's stock runs out.
func (r *runner) took(i int, q int64, done time.Time) {
	after := r.soldByClient[i].Add(q)
	if after >= r.cfg.Scenario.Stock && after-q < r.cfg.Scenario.Stock {
		r.soldOutAt[i].CompareAndSwap(0, int64(done.Sub(r.start))+1)
	}
}

// soldOut lists the SKUs whose stock ran out, in the order they did.
func (r *runner) soldOut() []SoldOut {
	var out []SoldOut
	for i := range r.soldOutAt {
		if ns := r.soldOutAt[i].Load(); ns > 0 {
			out = append(out, SoldOut{SKU: r.skus[i], At: time.Duration(ns - 1).Seconds()})
		}
	}
	slices.SortStableFunc(out, func(a, b SoldOut) int { return cmp.Compare(a.At, b.At) })
	return out
}

// tokenTTL is the lifetime of the users' tokens: the whole run, setup and
// audit included, with room to spare.
func tokenTTL(cfg Config) time.Duration {
	return cfg.Warmup + cfg.Scenario.Lead + cfg.Duration + 10*cfg.Timeout + time.Hour
}

// Run sets up the scenario's products, runs the load, and audits the server.
// It returns the result, and an error wrapping ErrAuditFailed when the audit
// found a violation (the result is returned too).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	transport := NewTransport(cfg.Concurrency)
	defer transport.CloseIdleConnections()
	r := &runner{
		cfg:    cfg,
		runID:  randomID(),
		client: &http.Client{Transport: transport, Timeout: cfg.Timeout},
	}
	if s := &cfg.Scenario; s.Admission == AdmissionQueue && s.SKUPrefix == DefaultSKUPrefix {
		// A waiting room keeps its tickets, and its start, across PUTs of
		// its product: each run gets a queue of its own.
		s.SKUPrefix = "bench-q" + r.runID + "-"
		r.cfg.Scenario.SKUPrefix = s.SKUPrefix
	}
	sc := cfg.Scenario
	for i := range sc.SKUs {
		sku := fmt.Sprintf("%s%d", sc.SKUPrefix, i)
		r.skus = append(r.skus, sku)
		r.singleItems = append(r.singleItems, []flashorder.ItemRequest{{SKU: sku, Quantity: sc.Quantity}})
	}
	users := sc.Users
	if cfg.JWTSecret != "" && users == 0 {
		users = cfg.Concurrency
	}
	for i := range users {
		r.users = append(r.users, fmt.Sprintf("u%s-%d", r.runID, i))
	}
	if cfg.JWTSecret != "" {
		for _, u := range r.users {
			token, err := jwtauth.Mint([]byte(cfg.JWTSecret), u, cfg.JWTIssuer, cfg.JWTAudience, tokenTTL(cfg))
			if err != nil {
				return nil, fmt.Errorf("loadtest: mint a token: %w", err)
			}
			r.auths = append(r.auths, "Bearer "+token)
		}
	}
	if sc.IsDrop() {
		r.drop = newDrop(r)
	}
	r.soldByClient = make([]atomic.Int64, sc.SKUs)
	r.soldOutAt = make([]atomic.Int64, sc.SKUs)
	nShards := runtime.GOMAXPROCS(0) * 4
	if nShards > cfg.Concurrency {
		nShards = cfg.Concurrency
	}
	for range nShards {
		r.shards = append(r.shards, newShard(cfg.LateThreshold, sc.IsDrop()))
	}

	admin := orderhttp.NewClient(cfg.URLs[0], cfg.AdminToken)
	admin.Token = cfg.AdminToken // the audit reads every user's orders
	admin.HTTPClient = &http.Client{Transport: transport, Timeout: 30 * time.Second}
	var before map[string]flashorder.AuditLine
	if !cfg.NoServer {
		var err error
		if before, err = r.setup(ctx, admin); err != nil {
			return nil, err
		}
	}

	if cfg.Events != "" || cfg.EventsReceiver != nil {
		ev, err := startEvents(ctx, cfg, "u"+r.runID+"-", time.Now().Add(-eventsSlack))
		if err != nil {
			return nil, err
		}
		r.events = ev
	}
	res := r.load(ctx, admin)
	res.RunID = r.runID
	res.Config = cfg
	if cfg.NoServer {
		return res, ctx.Err()
	}
	// An interrupted run is audited too: requests cut short count as
	// outcomes unknown, which the audit allows for.
	var interrupted error
	if ctx.Err() != nil {
		interrupted = fmt.Errorf("loadtest: run interrupted: %w", ctx.Err())
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	res.Audit = r.audit(actx, admin, before, res.workers)
	if !res.Audit.OK {
		return res, errors.Join(fmt.Errorf("%w: %d violation(s)", ErrAuditFailed, len(res.Audit.Violations)), interrupted)
	}
	return res, interrupted
}

// setup creates or resets the scenario's products and returns the audit lines
// of those products before the load, the baseline of the audit's deltas.
func (r *runner) setup(ctx context.Context, admin *orderhttp.Client) (map[string]flashorder.AuditLine, error) {
	sc := r.cfg.Scenario
	for _, sku := range r.skus {
		p := flashorder.Product{SKU: sku, Name: "orderbench " + sku, PriceCents: sc.PriceCents, Stock: sc.Stock, PerUserLimit: sc.PerUserLimit}
		var err error
		if r.drop != nil {
			err = r.drop.putProduct(ctx, admin, p)
		} else {
			_, err = admin.PutProduct(ctx, p)
		}
		if err != nil {
			return nil, fmt.Errorf("loadtest: set up product %s: %w", sku, err)
		}
	}
	a, err := admin.Audit(ctx)
	if err != nil {
		return nil, fmt.Errorf("loadtest: audit before the run: %w", err)
	}
	lines := map[string]flashorder.AuditLine{}
	for _, l := range a.Products {
		lines[l.SKU] = l
	}
	for _, sku := range r.skus {
		if _, ok := lines[sku]; !ok {
			return nil, fmt.Errorf("loadtest: audit before the run does not list product %s", sku)
		}
	}
	return lines, nil
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// workerState is what one worker leaves for the audit.
type workerState struct {
	orders    []record
	uncertain map[string]int64 // units per SKU of requests whose outcome is unknown
	// uncertainRequests counts those requests.
	uncertainRequests int64
	violations        []string
}

// record is one 201 the client saw.
type record struct {
	ID       string
	Key      string
	User     string
	Items    []flashorder.ItemRequest
	Replayed bool
	// CreatedAt is the 201's created_at (orderd's clock).
	CreatedAt time.Time
	// Ticket is the waiting room's ticket whose admission token the order
	// carried; "" without one.
	Ticket string
}

// load runs the workers and the collector and returns the statistics.
func (r *runner) load(ctx context.Context, admin *orderhttp.Client) *Result {
	cfg := r.cfg
	r.start = time.Now()
	if r.drop != nil {
		// T0, set at setup, is Lead after the start: the run started then.
		r.start = r.drop.t0.Add(-cfg.Scenario.Lead)
	}
	r.measureStart = r.start.Add(cfg.Warmup)
	if cfg.Duration > 0 {
		r.stopAt = r.measureStart.Add(cfg.Duration)
	}
	col := newCollector(r, admin)
	colDone := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { col.run(ctx, loadDone); close(colDone) }()
	sampled := make(chan struct{})
	if r.drop != nil && r.drop.q != nil && r.drop.q.queue {
		go func() { r.drop.q.sample(ctx, admin, loadDone); close(sampled) }()
	} else {
		close(sampled)
	}

	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = newWorker(r, i)
		if !cfg.StdHTTP {
			if raw, stop, err := newRawClient(ctx, cfg.URLs, cfg.Timeout); err == nil {
				workers[i].raw = raw
				defer raw.Close()
				defer stop()
			}
		}
	}
	var wg sync.WaitGroup
	var notSent int64
	switch {
	case r.drop != nil:
		r.drop.run(ctx, workers)
	case cfg.Rate > 0:
		tokens := make(chan int64, cfg.Concurrency)
		sched := Schedule{Start: r.start, Rate: cfg.Rate, Stages: cfg.Stages}
		for _, w := range workers {
			wg.Add(1)
			go func() { defer wg.Done(); w.openLoop(ctx, sched, tokens) }()
		}
		notSent = r.dispatch(ctx, sched, tokens)
	default:
		for _, w := range workers {
			wg.Add(1)
			go func() { defer wg.Done(); w.closedLoop(ctx) }()
		}
	}
	wg.Wait()
	close(loadDone)
	<-colDone
	<-sampled
	// After the collector's last tick, so that the final one, at end,
	// drains what that tick did not.
	end := time.Now()

	res := col.result(end)
	res.NotSent = notSent
	if r.drop != nil {
		res.Drop = r.drop.result()
		if r.drop.q != nil {
			res.Queue = r.drop.q.result()
		}
	}
	for _, w := range workers {
		res.workers = append(res.workers, w.state)
	}
	return res
}

// stopped reports whether the closed loop must send no new request.
func (r *runner) stopped(ctx context.Context, now time.Time) bool {
	if ctx.Err() != nil || (!r.stopAt.IsZero() && !now.Before(r.stopAt)) {
		return true
	}
	select {
	case <-r.cfg.Stop:
		return true
	default:
		return false
	}
}

// idle reports whether closed-loop client id must wait at now because the
// stages' ramp has not reached it (it is never idle without stages).
func (r *runner) idle(id int, now time.Time) bool {
	if len(r.cfg.Stages) == 0 {
		return false
	}
	return float64(id) >= math.Round(StageTarget(r.cfg.Stages, now.Sub(r.start)))
}

// dispatch hands out open-loop tokens at their intended times until the run
// ends, and returns how many due requests could not be sent at all. Tokens
// wait in a bounded channel; when every worker is busy the dispatcher blocks,
// and the late requests it then releases are charged from their intended time.
func (r *runner) dispatch(ctx context.Context, sched Schedule, tokens chan int64) int64 {
	limit := int64(-1)
	if r.cfg.Requests > 0 {
		limit = r.cfg.Requests + int64(r.cfg.Rate*r.cfg.Warmup.Seconds())
	}
	var next int64
	var stopTimer <-chan time.Time
	if !r.stopAt.IsZero() {
		t := time.NewTimer(time.Until(r.stopAt))
		defer t.Stop()
		stopTimer = t.C
	}
	finish := func() int64 {
		var notSent int64
		due := sched.Due(time.Now())
		if !r.stopAt.IsZero() {
			due = sched.Due(r.stopAt.Add(-1))
		}
		if limit >= 0 && due > limit {
			due = limit
		}
		if due > next {
			notSent = due - next
		}
		// Tokens still queued are not sent either.
		for {
			select {
			case <-tokens:
				notSent++
			default:
				close(tokens)
				return notSent
			}
		}
	}
	for {
		due := sched.Due(time.Now())
		if limit >= 0 && due > limit {
			due = limit
		}
		for ; next < due; next++ {
			if !r.stopAt.IsZero() && !sched.Intended(next).Before(r.stopAt) {
				close(tokens)
				return 0
			}
			select {
			case tokens <- next:
			case <-stopTimer:
				return finish()
			case <-ctx.Done():
				return finish()
			}
		}
		if (limit >= 0 && next >= limit) || (!r.stopAt.IsZero() && !sched.Intended(next).Before(r.stopAt)) {
			// Every request was handed out; the workers send what is queued.
			close(tokens)
			return 0
		}
		wait := time.NewTimer(time.Until(sched.Intended(next)))
		select {
		case <-wait.C:
		case <-stopTimer:
			wait.Stop()
			return finish()
		case <-ctx.Done():
			wait.Stop()
			return finish()
		}
	}
}
