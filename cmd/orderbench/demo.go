package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/flashorder/flashorder/internal/orderd"
	"github.com/flashorder/flashorder/loadtest"
)

// embedded is an orderd running inside orderbench: internal/orderd's Main,
// the server cmd/orderd runs, on its embedded default (SQLite, the batch
// strategy, in-process idempotency) with every other default of orderd's
// flags: the gate (product cache, sold-out marks), the in-flight bound, the order timeout, the
// expiry sweeper, the metrics.
type embedded struct {
	URL        string
	AdminToken string
	main       *orderd.Main
}

// startEmbedded starts an orderd on a free loopback port with its SQLite
// database in dir; args are more orderd flags (e.g. --auth jwt ...).
func startEmbedded(ctx context.Context, dir string, logTo io.Writer, args ...string) (*embedded, error) {
	e := &embedded{AdminToken: randomToken(), main: orderd.NewMain(logTo)}
	args = append([]string{"--listen", "127.0.0.1:0", "--db", "sqlite://" + filepath.Join(dir, "flashorder.db"),
		"--admin-token", e.AdminToken, "--log-level", "warn"}, args...)
	if err := e.main.ParseFlags(args, func(string) string { return "" }); err != nil {
		return nil, fmt.Errorf("embedded orderd: %w", err)
	}
	if err := e.main.Run(ctx); err != nil {
		e.main.Close(context.Background())
		return nil, fmt.Errorf("start embedded orderd: %w", err)
	}
	e.URL = e.main.URL()
	return e, nil
}

// Close drains and stops the embedded orderd.
func (e *embedded) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.main.Close(ctx)
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// The demo's drop: shorter than the drop scenario's, so that the whole demo
// takes about ten seconds.
const (
	demoLead  = 5 * time.Second
	demoAfter = 3 * time.Second
	// closedLoopDuration is the length of the demo before drops.
	closedLoopDuration = 6 * time.Second
)

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	var out outputs
	loadFlags(fs, &cfg, &out)
	closedLoop := fs.Bool("closed-loop", false, "run the demo before drops instead: --concurrency clients order the hot SKU "+
		"(2,000 units, 1 per user, 20,000 users) for --duration (6s unless given), no sale window")
	// The demo's own defaults: a drop, shorter than the scenario's, of
	// one hot SKU that sells out, one unit per user. --closed-loop runs
	// the same sale as a closed loop; another --scenario replaces them.
	setDefault(fs, "scenario", "drop")
	setDefault(fs, "lead", demoLead.String())
	setDefault(fs, "clock-skew", loadtest.DropClockSkew.String())
	setDefault(fs, "after", demoAfter.String())
	setDefault(fs, "duration", loadtest.DefaultDropDuration.String())
	setDefault(fs, "stock", "2000")
	setDefault(fs, "per-user-limit", "1")
	setDefault(fs, "users", "20000")
	if err := parseArgs(fs, args, &cfg); err != nil {
		return err
	}
	set := given(fs)
	if *closedLoop {
		for _, name := range []string{"scenario", "lead", "clock-skew", "after", "refresh"} {
			if set[name] {
				return fmt.Errorf("--closed-loop runs the sale without a drop: it cannot be combined with --%s", name)
			}
		}
		cfg.Scenario.Name, cfg.Scenario.Lead, cfg.Scenario.ClockSkew, cfg.Scenario.After = "", 0, 0, 0
		if !set["duration"] {
			cfg.Duration = closedLoopDuration
		}
	}
	if err := applyScenario(fs, &cfg); err != nil {
		return err
	}
	if cfg.Scenario.Name == "drop" {
		// The scenario's lead and after, unless given: the demo's.
		if !set["lead"] {
			cfg.Scenario.Lead = demoLead
		}
		if !set["after"] {
			cfg.Scenario.After = demoAfter
		}
	}
	dropDefaults(fs, &cfg, &out)
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
	stopEvents, err := eventsReceiver(&cfg, out, true, stdout)
	if err != nil {
		return err
	}
	defer stopEvents()
	e, err := startEmbedded(ctx, dir, stderr, eventsArgs(cfg, nil)...)
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stdout, "orderbench demo: embedded orderd at %s (SQLite in %s, strategy batch)\n", e.URL, dir)
	sc := cfg.Scenario
	switch {
	case sc.IsDrop():
		fmt.Fprintf(stdout, "drop: %d units, %d per user, for %d users who arrive over %s; the sale starts at T0, %s from now; "+
			"at most %d requests in flight\n", sc.Stock, sc.PerUserLimit, sc.Users, sc.Lead, sc.Lead, cfg.Concurrency)
	default:
		what := "flash sale:"
		if sc.Name != "" {
			what = "scenario"
		}
		length := cfg.Duration.String()
		if cfg.Duration == 0 {
			length = fmt.Sprintf("%d requests", cfg.Requests)
		}
		fmt.Fprintf(stdout, "%s %s; %d clients for %s\n", what, sc, cfg.Concurrency, length)
	}
	cfg.URLs = []string{e.URL}
	cfg.AdminToken = e.AdminToken
	cfg.Label = "demo"
	progressTo(&cfg, stderr, out.Quiet)
	return runAndReport(ctx, cfg, out, stdout)
}
