// Command orderbench is flashorder's load tester: it drives one or more orderd
// servers with a closed or open loop, prints live progress and a latency
// summary, and audits the server after every run (no oversell, no lost order,
// no double order); a failed audit exits with status 1, a failed --threshold
// with status 2.
//
//	orderbench run --url http://127.0.0.1:8080 --admin-token T [flags]
//	orderbench compare --strategies row,lock,segment,batch [flags]
//	orderbench demo
//	orderbench token --jwt-secret S --sub u-1
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/flashorder/flashorder/internal/buildinfo"
	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/loadtest/report"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orderbench:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is orderbench's exit status for err: 1 for a failed audit and any
// other failure, 2 when the only failure is a --threshold.
func exitCode(err error) int {
	if errors.Is(err, loadtest.ErrThresholdFailed) && !errors.Is(err, loadtest.ErrAuditFailed) {
		return 2
	}
	return 1
}

const usage = `usage: orderbench <command> [flags]

commands:
  run       load one or more orderd servers and audit them afterwards
  compare   start orderd once per strategy (plus a no-op ceiling) and compare
  demo      start an embedded orderd (SQLite, temp dir) and run a short drop (a sale that opens at T0)
  noop      serve the no-op ceiling (a Gin handler answering 201) for wrk or hey
  netdelay  a TCP proxy adding a set delay each way (orderd to its database, as across a network)
  token     print an HS256 user token for an orderd with --auth jwt (tests, curl)

orderbench <command> -h lists the command's flags; orderbench --version prints the build.
`

// run is orderbench: it parses the subcommand and its flags and runs it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	var err error
	switch args[0] {
	case "run":
		err = runCmd(ctx, args[1:], stdout, stderr)
	case "compare":
		err = compareCmd(ctx, args[1:], stdout, stderr)
	case "demo":
		err = demoCmd(ctx, args[1:], stdout, stderr)
	case "noop":
		err = noopCmd(ctx, args[1:], stdout, stderr)
	case "netdelay":
		err = netdelayCmd(ctx, args[1:], stdout, stderr)
	case "token":
		err = tokenCmd(args[1:], stdout, stderr)
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, "orderbench", buildinfo.Read())
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// stringList is a repeatable or comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// outputs are the report files a command writes, and the thresholds its
// results must meet.
type outputs struct {
	JSON       string
	HTML       string
	Hgrm       string
	CSV        string
	Quiet      bool
	CPUProfile string
	Thresholds []loadtest.Threshold
	// EventsSecret and EventsListen are --events webhook's receiver: the
	// signing secret and the address it listens on.
	EventsSecret string
	EventsListen string
}

// thresholdList is --threshold, repeatable.
type thresholdList struct{ list *[]loadtest.Threshold }

func (t thresholdList) String() string {
	if t.list == nil {
		return ""
	}
	parts := make([]string, len(*t.list))
	for i, th := range *t.list {
		parts[i] = th.Expr
	}
	return strings.Join(parts, ",")
}

func (t thresholdList) Set(v string) error {
	th, err := loadtest.ParseThreshold(v)
	if err != nil {
		return err
	}
	*t.list = append(*t.list, th)
	return nil
}

// loadFlags binds the flags shared by run, compare and demo to cfg.
func loadFlags(fs *flag.FlagSet, cfg *loadtest.Config, out *outputs) {
	fs.IntVar(&cfg.Concurrency, "concurrency", loadtest.DefaultConcurrency, "closed loop: number of clients; open loop: most requests in flight")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second, latency from each request's intended send time (0: closed loop)")
	fs.DurationVar(&cfg.Think, "think", 0, "closed loop: pause of each client between requests")
	fs.DurationVar(&cfg.Duration, "duration", loadtest.DefaultDuration, "measured time (0 with --requests: until that many requests); "+
		"a drop ends when its users are done, this bounds its sale after T0 ("+loadtest.DefaultDropDuration.String()+" unless given)")
	fs.Int64Var(&cfg.Requests, "requests", 0, "stop after this many measured requests (0: no limit)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "load before the measurement (audited, not counted)")
	fs.DurationVar(&cfg.Timeout, "timeout", loadtest.DefaultTimeout, "timeout of each request")
	fs.DurationVar(&cfg.LateThreshold, "late-threshold", loadtest.DefaultLateThreshold, "open loop: a request sent later than this after its intended time counts as late")
	fs.IntVar(&cfg.AuditSample, "audit-sample", loadtest.DefaultAuditSample, "how many 201s the audit reads back with GET /orders/{id} (-1: all)")
	fs.StringVar(&cfg.Scenario.Name, "scenario", "", "named workload of the benchmark tables: "+strings.Join(loadtest.ScenarioNames(), ", ")+
		" (scenario flags given with it override its values)")
	scenarioFlags(fs, &cfg.Scenario)
	fs.Func("stages", "ramp the load, duration:target,... e.g. 10s:500,30s:2000: linear from the previous target (0 at first); "+
		"targets are clients, or requests/s with --rate (any value, it only selects the open loop); the run lasts as long as the stages",
		func(v string) (err error) { cfg.Stages, err = loadtest.ParseStages(v); return err })
	fs.DurationVar(&cfg.Bucket, "bucket", 0, "length of the time series' buckets (0: sized to the run, 10ms up to 1s, 100ms up to 30s)")
	fs.Var(thresholdList{&out.Thresholds}, "threshold", "pass condition, repeatable: p99<50ms, p99.9<200ms, mean<10ms, max<1s, "+
		"errors<1% (5xx and transport failures; errors<5 counts), rate>5000 (answers/s), orders>1000 (orders/s); a failed one exits 2")
	fs.StringVar(&out.JSON, "json", "", "write the results as JSON to this file")
	fs.StringVar(&out.HTML, "html", "", "write a self-contained HTML report to this file")
	fs.StringVar(&out.Hgrm, "hgrm", "", "write the latency histogram in HdrHistogram's percentile format (.hgrm, ms) to this file")
	fs.StringVar(&out.CSV, "csv", "", "write the time series as CSV (one row per bucket) to this file")
	fs.StringVar(&cfg.Events, "events", "", "consume and audit orderd's order events: the URL orderd's --events was given, "+
		"nats://host:port[,host:port]/subject-prefix, or webhook: receive them signed at --events-listen "+
		"(compare and demo give it to the orderd they start)")
	fs.StringVar(&out.EventsSecret, "events-secret", "", "--events webhook: orderd's --events-secret, to verify the signatures "+
		"(default $ORDERD_EVENTS_SECRET; compare and demo make one for the orderd they start)")
	fs.StringVar(&out.EventsListen, "events-listen", "127.0.0.1:0", "--events webhook: the receiver's address (port 0: a free one)")
	fs.DurationVar(&cfg.EventsWait, "events-wait", loadtest.DefaultEventsWait, "with --events: the longest wait after the load "+
		"for the relay to deliver the run's events (not delivered by then: the audit fails)")
	fs.Float64Var(&cfg.EventsPay, "events-pay", 0, "with --events: share (0..1) of the run's 201s paid after the load, "+
		"before the events wait; each 200 must have its order.paid (orderseq 2)")
	fs.Float64Var(&cfg.EventsCancel, "events-cancel", 0, "with --events: share (0..1) of the run's 201s cancelled after the load "+
		"(with --events-pay at most 1 in all); each 200 must have its order.cancelled (orderseq 2)")
	fs.BoolVar(&cfg.StdHTTP, "std-http", false, "send orders with net/http instead of the built-in HTTP/1.1 keep-alive client")
	fs.BoolVar(&out.Quiet, "quiet", false, "no live progress")
	fs.StringVar(&out.CPUProfile, "cpuprofile", "", "write orderbench's own CPU profile to this file (to find the tool's limits)")
}

// eventsArgs returns the orderd arguments extra, and --events with the URL of
// cfg.Events (and the webhook receiver's secret) for an orderd that
// orderbench starts, unless extra gives one.
func eventsArgs(cfg loadtest.Config, extra []string) []string {
	args := slices.Clone(extra)
	if cfg.Events == "" || slices.ContainsFunc(extra, func(a string) bool {
		a = strings.TrimLeft(a, "-")
		return a == "events" || strings.HasPrefix(a, "events=")
	}) {
		return args
	}
	args = append(args, "--events", cfg.Events)
	if w := cfg.EventsReceiver; w != nil {
		args = append(args, "--events-secret", w.Secret())
	}
	return args
}

// eventsReceiver starts orderbench's webhook receiver when --events is
// webhook, into cfg, and returns the function that stops it. startsOrderd
// tells that orderbench starts the orderd (compare, demo), which is given
// the receiver's URL and secret (a new one unless given); otherwise the
// user gives them to orderd, so the address is printed and the secret
// must be orderd's.
func eventsReceiver(cfg *loadtest.Config, out outputs, startsOrderd bool, stdout io.Writer) (func(), error) {
	if cfg.Events != "webhook" {
		return func() {}, nil
	}
	secret := out.EventsSecret
	if secret == "" {
		secret = os.Getenv("ORDERD_EVENTS_SECRET") // not the flag's default: -h never prints it
	}
	if secret == "" {
		if !startsOrderd {
			return nil, errors.New("--events webhook needs orderd's --events-secret (or ORDERD_EVENTS_SECRET) to verify the signatures")
		}
		secret = loadtest.NewWebhookSecret()
	}
	w, err := loadtest.NewWebhookReceiver(out.EventsListen, secret)
	if err != nil {
		return nil, err
	}
	cfg.EventsReceiver, cfg.Events = w, w.URL()
	if !startsOrderd {
		fmt.Fprintf(stdout, "events: webhook receiver at %s: orderd must publish there (--events %s) with the same --events-secret\n", w.URL(), w.URL())
	}
	return func() { _ = w.Close() }, nil
}

// scenarioFlags binds the flags that describe what is ordered to s. Given
// with --scenario, they override the named scenario's values.
func scenarioFlags(fs *flag.FlagSet, s *loadtest.Scenario) {
	fs.IntVar(&s.SKUs, "skus", loadtest.DefaultSKUs, "number of products (1: one hot SKU)")
	fs.StringVar(&s.SKUPrefix, "sku-prefix", loadtest.DefaultSKUPrefix, "product SKUs are PREFIX0, PREFIX1, ...; the run resets them")
	fs.Int64Var(&s.Stock, "stock", loadtest.DefaultStock, "stock of each product at setup")
	fs.Int64Var(&s.PriceCents, "price-cents", loadtest.DefaultPriceCents, "price of each product")
	fs.Int64Var(&s.PerUserLimit, "per-user-limit", 0, "per-user limit of each product (0: none)")
	fs.Float64Var(&s.Zipf, "zipf", 0, "pick SKUs with a Zipf distribution of this exponent (> 1; 0: uniform)")
	fs.Float64Var(&s.MultiShare, "multi-share", 0, "share (0..1) of orders with several items")
	fs.IntVar(&s.MultiItems, "multi-items", loadtest.DefaultMultiItems, "distinct SKUs in a multi-item order")
	fs.Int64Var(&s.Quantity, "quantity", loadtest.DefaultQuantity, "quantity of every item")
	fs.IntVar(&s.Users, "users", 0, "size of the user pool, so per-user limits bite (0: a new user per order)")
	fs.Float64Var(&s.RetryShare, "retry-share", 0, "share (0..1) of requests that resend the previous request with the same Idempotency-Key")
	fs.Var(keysFlag{&s.NoKeys}, "keys", "send an Idempotency-Key with every order (--keys=false: none)")
	fs.DurationVar(&s.Lead, "lead", 0, fmt.Sprintf("drop: the sale starts (T0) this long after the run starts, users arrive over it; "+
		"> 0 makes the run a drop (--scenario drop: %s)", loadtest.DropLead))
	fs.DurationVar(&s.ClockSkew, "clock-skew", 0, fmt.Sprintf("drop: the users' clocks are off by up to this much either way "+
		"(--scenario drop: %s)", loadtest.DropClockSkew))
	fs.DurationVar(&s.After, "after", 0, fmt.Sprintf("drop: how long a user told sold_out goes on reloading the page and ordering again "+
		"(--scenario drop: %s)", loadtest.DropAfter))
	fs.DurationVar(&s.Refresh, "refresh", 0, fmt.Sprintf("drop: how often such a user reloads, give or take half (0: %s)", loadtest.DefaultRefresh))
	fs.StringVar(&s.Admission, "admission", "", "drop: queue sells the product through orderd's waiting room: buyers join, poll, order with their admission token (open: without)")
	fs.Float64Var(&s.Bots, "bots", 0, "drop: share (0..1) of the users that are bots: each rotates --bot-ids user ids, joins early and polls hard "+
		"(with --admission queue) or orders from 100ms before T0 and retries (without)")
	fs.IntVar(&s.BotIDs, "bot-ids", 0, fmt.Sprintf("drop: user ids per bot (0: %d)", loadtest.DefaultBotIDs))
	fs.DurationVar(&s.BotPoll, "bot-poll", 0, fmt.Sprintf("drop: how often a bot polls its tickets, whatever poll_after_ms says (0: %s)", loadtest.DefaultBotPoll))
	fs.Float64Var(&s.LateShare, "late-share", 0, fmt.Sprintf("drop: share (0..1) of the buyers (not bots) who arrive after T0, over --late "+
		"(with --admission queue or --bots: %g unless given)", defaultLateShare))
	fs.DurationVar(&s.Late, "late", 0, "drop: the buyers of --late-share arrive over this long after T0 (0: the lead)")
}

// defaultLateShare is --late-share in a drop with a queue or bots: some
// buyers join after T0, so that the queue's order after the start is
// measured.
const defaultLateShare = 0.3

// keysFlag is --keys, the negation of Scenario.NoKeys.
type keysFlag struct{ noKeys *bool }

func (k keysFlag) String() string {
	if k.noKeys == nil {
		return "false" // the zero value flag.PrintDefaults compares with
	}
	return strconv.FormatBool(!*k.noKeys)
}

func (k keysFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	*k.noKeys = !b
	return nil
}

// IsBoolFlag lets --keys stand alone, like a flag.Bool.
func (k keysFlag) IsBoolFlag() bool { return true }

// applyScenario replaces cfg.Scenario with the scenario --scenario names, if
// any, and sets again the scenario flags given explicitly, which override it.
func applyScenario(fs *flag.FlagSet, cfg *loadtest.Config) error {
	if cfg.Scenario.Name == "" {
		return nil
	}
	named, err := loadtest.NamedScenario(cfg.Scenario.Name)
	if err != nil {
		return err
	}
	probe := flag.NewFlagSet("scenario", flag.ContinueOnError)
	scenarioFlags(probe, &loadtest.Scenario{})
	explicit := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		if probe.Lookup(f.Name) != nil {
			explicit[f.Name] = f.Value.String()
		}
	})
	cfg.Scenario = named
	for name, v := range explicit {
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
	}
	return nil
}

// setDefault changes the default of a flag. Unlike fs.Set it does not count as
// given: a --scenario still sets the flag's value.
func setDefault(fs *flag.FlagSet, name, value string) {
	f := fs.Lookup(name)
	f.DefValue = value
	_ = f.Value.Set(value)
}

// progressTo sets where live progress goes: stderr, as one updating line when
// it is a terminal.
func progressTo(cfg *loadtest.Config, stderr io.Writer, quiet bool) {
	if quiet {
		return
	}
	cfg.Progress = stderr
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			cfg.Terminal = true
		}
	}
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	var out outputs
	var urls stringList
	fs.Var(&urls, "url", "orderd base URL, repeatable or comma-separated; requests go round-robin (default http://127.0.0.1:8080)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "orderd's admin token, for setup and audit (default $ORDERD_ADMIN_TOKEN)")
	fs.BoolVar(&cfg.NoServer, "no-server", false, "the target is not orderd (a no-op server, to measure the tool itself): no setup, no audit")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "orderd's --jwt-secret (auth jwt): mint a token per simulated user at the start (default $ORDERD_JWT_SECRET)")
	fs.StringVar(&cfg.JWTIssuer, "jwt-issuer", "", "iss claim of the minted tokens (orderd's --jwt-issuer)")
	fs.StringVar(&cfg.JWTAudience, "jwt-audience", "", "aud claim of the minted tokens (orderd's --jwt-audience)")
	loadFlags(fs, &cfg, &out)
	if err := parseFlags(fs, args, &cfg, &out); err != nil {
		return err
	}
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = os.Getenv("ORDERD_JWT_SECRET") // not the flag's default: -h never prints it
	}
	if len(urls) == 0 {
		urls = stringList{"http://127.0.0.1:8080"}
	}
	if cfg.AdminToken == "" {
		// Read here, not as the flag's default, so that -h never prints it.
		cfg.AdminToken = os.Getenv("ORDERD_ADMIN_TOKEN")
	}
	if cfg.AdminToken == "" && !cfg.NoServer {
		return errors.New("--admin-token (or ORDERD_ADMIN_TOKEN) is required for setup and audit")
	}
	cfg.URLs = urls
	stopEvents, err := eventsReceiver(&cfg, out, false, stdout)
	if err != nil {
		return err
	}
	defer stopEvents()
	progressTo(&cfg, stderr, out.Quiet)
	return runAndReport(ctx, cfg, out, stdout)
}

// runAndReport runs cfg, prints the summary and writes the reports. A failed
// audit is returned as an error after the reports are written.
func runAndReport(ctx context.Context, cfg loadtest.Config, out outputs, stdout io.Writer) error {
	stopProfile, err := startProfile(out.CPUProfile)
	if err != nil {
		return err
	}
	res, err := loadtest.Run(ctx, cfg)
	stopProfile()
	if res == nil {
		return err
	}
	if len(out.Thresholds) > 0 {
		err = errors.Join(err, loadtest.Check(res, out.Thresholds))
	}
	report.WriteSummary(stdout, res)
	if werr := writeReports(out, "orderbench "+runTitle(cfg), res, stdout); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// runTitle names a run in its report: the label (demo) or "run".
func runTitle(cfg loadtest.Config) string {
	if cfg.Label != "" {
		return cfg.Label
	}
	return "run"
}

// writeReports writes the report files out asks for and names them on
// stdout.
func writeReports(out outputs, title string, res *loadtest.Result, stdout io.Writer) error {
	files := []struct {
		path, what string
		write      func(io.Writer, *loadtest.Result) error
	}{
		{out.HTML, "HTML report", func(w io.Writer, r *loadtest.Result) error {
			return report.WriteHTML(w, report.Page{Title: title, Runs: []*loadtest.Result{r}})
		}},
		{out.JSON, "JSON results", func(w io.Writer, r *loadtest.Result) error {
			b, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				return err
			}
			_, err = w.Write(append(b, '\n'))
			return err
		}},
		{out.CSV, "CSV time series", report.WriteCSV},
		{out.Hgrm, "latency histogram (.hgrm)", report.WriteHgrm},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if err := report.WriteFile(f.path, res, f.write); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s\n", f.what, f.path)
	}
	return nil
}

// parseFlags parses args into fs, refuses stray arguments, completes cfg
// with finishFlags, applies --scenario and gives a drop its threshold.
func parseFlags(fs *flag.FlagSet, args []string, cfg *loadtest.Config, out *outputs) error {
	if err := parseArgs(fs, args, cfg); err != nil {
		return err
	}
	if err := applyScenario(fs, cfg); err != nil {
		return err
	}
	dropDefaults(fs, cfg, out)
	return nil
}

// parseArgs parses args into fs, refuses stray arguments and completes cfg
// with finishFlags.
func parseArgs(fs *flag.FlagSet, args []string, cfg *loadtest.Config) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	finishFlags(fs, cfg)
	return nil
}

// dropDefaults gives a drop its own defaults: its sale runs for up to
// loadtest.DefaultDropDuration after T0 unless --duration is given (the drop
// ends when its users are done), and any error (5xx or no answer, orders or
// product page) fails it unless a --threshold on errors says otherwise: a
// healthy drop has none.
func dropDefaults(fs *flag.FlagSet, cfg *loadtest.Config, out *outputs) {
	if !cfg.Scenario.IsDrop() {
		return
	}
	if !given(fs)["duration"] {
		cfg.Duration = loadtest.DefaultDropDuration
	}
	if sc := &cfg.Scenario; (sc.Admission == loadtest.AdmissionQueue || sc.Bots > 0) && !given(fs)["late-share"] {
		sc.LateShare = defaultLateShare
	}
	for _, t := range out.Thresholds {
		if strings.HasPrefix(t.Expr, "errors") {
			return
		}
	}
	t, _ := loadtest.ParseThreshold("errors<1")
	out.Thresholds = append(out.Thresholds, t)
}

// given returns the names of the flags set on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// finishFlags applies the rules between flags: --requests without an explicit
// --duration runs until that many requests.
func finishFlags(fs *flag.FlagSet, cfg *loadtest.Config) {
	if cfg.Requests > 0 && !given(fs)["duration"] {
		cfg.Duration = 0
	}
}

// startProfile starts a CPU profile into path ("" for none) and returns the
// function that stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
