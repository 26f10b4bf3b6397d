package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/loadtest/report"
)

// compareRow is one line of the comparison: a strategy's result, or why it
// has none.
type compareRow struct {
	Name   string           `json:"name"`
	Result *loadtest.Result `json:"result,omitempty"`
	Failed string           `json:"failed,omitempty"`
}

func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderbench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	var out outputs
	var cf compareFlags
	fs.Var(&cf.strategies, "strategies", "strategies to compare, comma-separated (default row)")
	fs.StringVar(&cf.orderd, "orderd", "", "orderd binary (default: go build ./cmd/orderd when run in the source tree, else orderd on PATH)")
	fs.StringVar(&cf.db, "db", "", "orderd --db URL for every strategy (default: a fresh SQLite file per strategy)")
	fs.StringVar(&cf.lock, "lock", "memory", "orderd --lock URL")
	fs.BoolVar(&cf.fresh, "fresh-db", false, "with a postgres:// or mysql:// --db: run each strategy on a new empty database on that server, dropped afterwards")
	fs.Var(&cf.extra, "orderd-arg", "extra orderd argument, repeatable (e.g. --orderd-arg=--db-max-conns=32)")
	loadFlags(fs, &cfg, &out)
	if err := parseFlags(fs, args, &cfg, &out); err != nil {
		return err
	}
	if len(cf.strategies) == 0 {
		cf.strategies = stringList{"row"}
	}
	tmp, err := os.MkdirTemp("", "orderbench-compare-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	cf.tmp = tmp
	if cf.orderd == "" {
		if cf.orderd, err = findOrderd(ctx, tmp, stderr); err != nil {
			return err
		}
	}
	stopEvents, err := eventsReceiver(&cfg, out, true, stdout)
	if err != nil {
		return err
	}
	defer stopEvents()
	progressTo(&cfg, stderr, out.Quiet)
	stopProfile, err := startProfile(out.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()

	var rows []compareRow
	if cfg.Scenario.IsDrop() {
		// The no-op handler has no sale window and no product page.
		fmt.Fprintf(stdout, "== no no-op ceiling for a drop: its users need orderd's product page and sale window\n")
	} else {
		fmt.Fprintf(stdout, "== no-op ceiling: in-process Gin handler answering 201\n")
		ceiling, err := runCeiling(ctx, cfg)
		if err != nil {
			rows = append(rows, compareRow{Name: "no-op ceiling", Failed: err.Error()})
		} else {
			report.WriteSummary(stdout, ceiling)
			rows = append(rows, compareRow{Name: "no-op ceiling", Result: ceiling})
		}
	}
	auditFailed := false
	for _, s := range cf.strategies {
		row := cf.run(ctx, cfg, s, stdout)
		if row.Result != nil && row.Result.Audit != nil && !row.Result.Audit.OK {
			auditFailed = true
		}
		rows = append(rows, row)
	}

	thresholdErr := checkRows(rows, out.Thresholds, stdout)
	if err := writeComparison(rows, cfg.Scenario, out, stdout); err != nil {
		return err
	}
	var failed error
	if auditFailed {
		failed = fmt.Errorf("%w: see the table", loadtest.ErrAuditFailed)
	}
	return errors.Join(failed, thresholdErr)
}

// compareFlags are compare's own flags, beside the load's, and its temporary
// directory.
type compareFlags struct {
	strategies, extra stringList
	orderd, db, lock  string
	fresh             bool
	tmp               string
}

// run measures strategy s on its database (a SQLite file in the temporary
// directory, --db, or a fresh database on --db's server, dropped after).
func (cf *compareFlags) run(ctx context.Context, cfg loadtest.Config, s string, stdout io.Writer) compareRow {
	if ctx.Err() != nil {
		return compareRow{Name: s, Failed: "interrupted"}
	}
	fmt.Fprintf(stdout, "== strategy %s\n", s)
	dbURL := cf.db
	var drop func() error
	switch {
	case dbURL == "":
		dbURL = "sqlite://" + filepath.Join(cf.tmp, databasePrefix(s)+randomToken()[:8]+".db")
	case cf.fresh:
		var err error
		if dbURL, drop, err = freshDatabase(ctx, cf.db, s); err != nil {
			fmt.Fprintf(stdout, "strategy %s FAILED: %v\n", s, err)
			return compareRow{Name: s, Failed: err.Error()}
		}
	}
	row := compareStrategy(ctx, cfg, cf.orderd, s, dbURL, cf.lock, cf.extra, stdout)
	if drop != nil {
		if err := drop(); err != nil {
			fmt.Fprintf(stdout, "warning: %v\n", err)
		}
	}
	if row.Failed != "" {
		fmt.Fprintf(stdout, "strategy %s FAILED: %s\n", s, row.Failed)
	}
	return row
}

// writeComparison prints the comparison table and writes the JSON and HTML
// files out asks for.
func writeComparison(rows []compareRow, sc loadtest.Scenario, out outputs, stdout io.Writer) error {
	table := fmt.Sprintf("scenario %s\n", sc)
	if sc.IsDrop() {
		table += dropTable(rows)
	} else {
		table += compareTable(rows)
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, table)
	if out.JSON != "" {
		if err := report.WriteJSON(out.JSON, map[string]any{"rows": rows}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "JSON results: %s\n", out.JSON)
	}
	if out.HTML != "" {
		if err := report.WriteHTMLFile(out.HTML, compareReport(rows, table)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "HTML report: %s\n", out.HTML)
	}
	// --csv and --hgrm: one file per run, the row's name before the extension.
	for _, r := range rows {
		if r.Result == nil {
			continue
		}
		each := outputs{CSV: perRow(out.CSV, r.Name), Hgrm: perRow(out.Hgrm, r.Name)}
		if err := writeReports(each, "", r.Result, stdout); err != nil {
			return err
		}
	}
	return nil
}

// perRow turns report.csv into report-batch.csv for the row named name ("" stays "").
func perRow(path, name string) string {
	if path == "" {
		return ""
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + clean + ext
}

// checkRows checks the thresholds against every strategy's result (not the
// ceiling's) and prints the verdicts.
func checkRows(rows []compareRow, thresholds []loadtest.Threshold, stdout io.Writer) error {
	var errs []error
	for _, r := range rows {
		if len(thresholds) == 0 || r.Result == nil || r.Result.Config.NoServer {
			continue
		}
		if err := loadtest.Check(r.Result, thresholds); err != nil {
			fmt.Fprintf(stdout, "strategy %s: %v\n", r.Name, err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// compareTable renders the comparison.
func compareTable(rows []compareRow) string {
	var ceiling float64
	if len(rows) > 0 && rows[0].Result != nil {
		ceiling = rows[0].Result.AchievedRate
	}
	var b strings.Builder
	const head = "%-16s %10s %11s %9s %9s %8s  %s\n"
	fmt.Fprintf(&b, head, "strategy", "orders/s", "vs ceiling", "p50 ms", "p99 ms", "errors", "audit")
	for _, r := range rows {
		if r.Result == nil {
			fmt.Fprintf(&b, head, r.Name, "-", "-", "-", "-", "-", "FAILED: "+firstLine(r.Failed))
			continue
		}
		res := r.Result
		rate, audit := res.OrdersPerSec, "n/a"
		if res.Config.NoServer {
			rate = res.AchievedRate
		}
		if res.Audit != nil {
			audit = "ok"
			if !res.Audit.OK {
				audit = fmt.Sprintf("FAILED (%d violations)", len(res.Audit.Violations))
			}
		}
		ratio := "-"
		if ceiling > 0 {
			ratio = fmt.Sprintf("%.1f%%", 100*rate/ceiling)
		}
		fmt.Fprintf(&b, head, r.Name, fmt.Sprintf("%.0f", rate), ratio, fmt.Sprintf("%.2f", res.Latency.P50),
			fmt.Sprintf("%.2f", res.Latency.P99), fmt.Sprint(res.Errors), audit)
	}
	return b.String()
}

// dropTable renders the comparison of drops: per strategy, the orders
// before the start, the first order against starts_at, how long the stock
// lasted, the latency of orders and of the product page, errors and audit.
func dropTable(rows []compareRow) string {
	var b strings.Builder
	const head = "%-16s %12s %14s %12s %9s %9s %8s  %s\n"
	fmt.Fprintf(&b, head, "strategy", "before start", "first order", "lasted", "p99 ms", "page p99", "errors", "audit")
	for _, r := range rows {
		if r.Result == nil || r.Result.Drop == nil {
			fmt.Fprintf(&b, head, r.Name, "-", "-", "-", "-", "-", "-", "FAILED: "+firstLine(r.Failed))
			continue
		}
		res := r.Result
		before, first, lasted, pageP99, audit := "-", "-", "not sold out", "-", "n/a"
		if a := res.Audit; a != nil {
			audit = "ok"
			if !a.OK {
				audit = fmt.Sprintf("FAILED (%d violations)", len(a.Violations))
			}
			if w := a.Window; w != nil {
				before = fmt.Sprint(w.BeforeStart)
				if w.Orders > 0 {
					first = fmt.Sprintf("%+.2f ms", float64(w.First.Sub(w.StartsAt).Microseconds())/1000)
				}
			}
		}
		if d, ok := res.Lasted(); ok {
			lasted = fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
		}
		errs := res.Errors
		if pg := res.Page; pg != nil {
			pageP99, errs = fmt.Sprintf("%.2f", pg.Latency.P99), errs+pg.Errors
		}
		fmt.Fprintf(&b, head, r.Name, before, first, lasted, fmt.Sprintf("%.2f", res.Latency.P99), pageP99, fmt.Sprint(errs), audit)
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// compareReport is compare's HTML report: the table, the strategies' orders
// per second as bars with the no-op ceiling as a reference line (it is not a
// strategy), and their latency distributions.
func compareReport(rows []compareRow, table string) report.Page {
	rep := report.Page{Title: "orderbench compare", Table: table}
	var labels []string
	var values []float64
	var dist []report.Line
	var refs []report.Marker
	for _, r := range rows {
		if r.Result == nil {
			// Shown as an empty bar: a failed strategy is never left out.
			labels, values = append(labels, r.Name+" (FAILED)"), append(values, 0)
			continue
		}
		dist = append(dist, report.DistLine(r.Result, r.Name))
		rep.Runs = append(rep.Runs, r.Result)
		if r.Result.Config.NoServer {
			refs = append(refs, report.Marker{At: r.Result.AchievedRate,
				Label: fmt.Sprintf("no-op ceiling: %s answers/s (what orderbench itself can send here)", humanize.Comma(int64(r.Result.AchievedRate)))})
			continue
		}
		name, v := r.Name, r.Result.OrdersPerSec
		if r.Result.Drop != nil {
			lasted, soldOut := r.Result.Lasted()
			if v = float64(lasted) / float64(time.Millisecond); !soldOut {
				name += " (not sold out)"
			}
		}
		labels, values = append(labels, name), append(values, v)
	}
	bars := report.BarChart("Orders per second by strategy", "orders per second", labels, values, refs...)
	if len(rep.Runs) > 0 && rep.Runs[0].Drop != nil {
		bars = report.BarChart("How long the stock lasted, by strategy (ms from starts_at to the last order)", "ms", labels, values)
	}
	rep.Summary = []template.HTML{
		bars,
		report.Chart{Title: "Latency distribution", XLabel: "percentile", YLabel: "ms (log)", Lines: dist, LogY: true,
			XTicks: report.NinesTicks}.SVG(),
	}
	return rep
}

// runCeiling measures the tool's own ceiling: the same load against a Gin
// handler that does nothing but answer 201 with a small JSON body.
func runCeiling(ctx context.Context, cfg loadtest.Config) (*loadtest.Result, error) {
	url, stop, err := startNoop()
	if err != nil {
		return nil, err
	}
	defer stop()
	cfg.URLs = []string{url}
	cfg.NoServer = true
	cfg.Events, cfg.EventsReceiver = "", nil // the no-op publishes nothing
	cfg.EventsPay, cfg.EventsCancel = 0, 0   // and has no orders to move
	cfg.Label = "no-op ceiling"
	return loadtest.Run(ctx, cfg)
}

// noopBody is what the no-op handler answers: the size of a real order.
var noopBody = []byte(`{"id":"00000000000000000000000000","user_id":"u-1","status":"created","items":[{"sku":"bench-0","quantity":1,"price_cents":1999}],"total_cents":1999,"created_at":"2025-01-01T00:00:00Z"}`)

// noopProduct is the no-op's product page: as long as orderd's for a drop.
var noopProduct = []byte(`{"sku":"drop-1","name":"Sneaker","price_cents":19900,"stock":50,"sold":0,"per_user_limit":1,` +
	`"starts_at":"2026-12-01T10:00:00Z","ends_at":"2026-12-01T11:00:00Z","payment_window":"5m0s","status":"upcoming",` +
	`"server_time":"2026-12-01T09:59:58.123456789Z"}` + "\n")

// noopHandler is the no-op ceiling: Gin answering every order 201, and the
// product page 200, at once.
func noopHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/api/v1/orders", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.Data(http.StatusCreated, "application/json; charset=utf-8", noopBody)
	})
	// The product page's ceiling: a product of the same size, 200.
	r.GET("/api/v1/products/:sku", func(c *gin.Context) {
		c.Data(http.StatusOK, "application/json; charset=utf-8", noopProduct)
	})
	return r
}

// startNoop starts the no-op Gin server on a free loopback port.
func startNoop() (string, func(), error) {
	srv := httptestServer(noopHandler())
	if err := srv.start(); err != nil {
		return "", nil, err
	}
	return srv.url, srv.stop, nil
}

// findOrderd builds orderd from the source tree when orderbench runs in it,
// else finds it on PATH.
func findOrderd(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	if _, err := os.Stat(filepath.Join("cmd", "orderd", "main.go")); err == nil {
		bin := filepath.Join(dir, "orderd")
		fmt.Fprintln(stderr, "orderbench: building orderd (go build ./cmd/orderd)")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/orderd")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("build orderd: %w", err)
		}
		return bin, nil
	}
	bin, err := exec.LookPath("orderd")
	if err != nil {
		return "", errors.New("no orderd: pass --orderd PATH, put orderd on PATH, or run in the source tree")
	}
	return bin, nil
}

var listeningRE = regexp.MustCompile(`msg="orderd listening" addr=(\S+)`)

// compareStrategy starts orderd with one strategy, runs the load against it,
// and stops it.
func compareStrategy(ctx context.Context, cfg loadtest.Config, bin, strategy, db, lock string, extra []string, stdout io.Writer) compareRow {
	row := compareRow{Name: strategy}
	token := randomToken()
	args := append([]string{"--listen", "127.0.0.1:0", "--db", db, "--strategy", strategy, "--lock", lock,
		"--admin-token", token}, eventsArgs(cfg, extra)...)
	p, err := startProcess(ctx, bin, args)
	if err != nil {
		row.Failed = err.Error()
		return row
	}
	defer p.stop()
	cfg.URLs = []string{"http://" + p.addr}
	cfg.AdminToken = token
	cfg.Label = strategy
	res, err := loadtest.Run(ctx, cfg)
	if res != nil {
		report.WriteSummary(stdout, res)
		row.Result = res
	}
	if err != nil && !errors.Is(err, loadtest.ErrAuditFailed) {
		row.Failed = err.Error()
		row.Result = nil
	}
	return row
}

// process is a running orderd.
type process struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	tail   []string
	exited chan struct{}
}

func (p *process) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// exitReason is what orderd said before it exited: its last line (the
// error) first, for the table's one-line FAILED cell, then the lines before.
func (p *process) exitReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "(no output)"
	}
	last := p.tail[len(p.tail)-1]
	if len(p.tail) == 1 {
		return last
	}
	return last + "\nbefore that:\n" + strings.Join(p.tail[:len(p.tail)-1], "\n")
}

// startProcess starts orderd and waits until it listens and is ready.
func startProcess(ctx context.Context, bin string, args []string) (*process, error) {
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start orderd: %w", err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start orderd: %w", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		return nil, fmt.Errorf("orderd exited: %s", p.exitReason())
	case <-timeout.C:
		p.stop()
		return nil, fmt.Errorf("orderd did not listen within 60s: %s", p.lastLines())
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
	// Ready when /readyz says so.
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("orderd at %s not ready within 30s: %s", p.addr, p.lastLines())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop asks orderd to shut down and kills it if it does not within 15s.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
