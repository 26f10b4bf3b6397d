package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/fakeorderd"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/loadtest"
)

func runArgs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	t.Logf("orderbench %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String(), err
}

// TestDemo runs `orderbench demo` as a newcomer would, a drop, shrunk to a
// few seconds: the headline tells the drop, the report opens with its
// figures and charts, T0 and the sell-out marked.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	html, js := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.json")
	csvPath, hgrm := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.hgrm")
	out, err := runArgs(t, "demo", "--users", "500", "--stock", "50", "--lead", "1s", "--after", "500ms", "--concurrency", "16",
		"--html", html, "--json", js, "--csv", csvPath, "--hgrm", hgrm)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, want := range []string{"audit: OK", "threshold  errors<1", "---- T0: the sale starts", "sold out to the last unit"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^The drop: 50 units for 500 users at T0; 0 orders before the start; the first order was accepted .* after starts_at; ` +
		`the stock lasted .* \(50 orders\); .*; 0 errors`).MatchString(out) {
		t.Errorf("the demo's headline does not tell the drop")
	}
	for _, f := range []string{csvPath, hgrm} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatalf("HTML report: %v", err)
	}
	for _, want := range []string{"<svg", "orders before the start", "first order accepted", "the stock lasted",
		"Order answers per second, by kind", "Throughput: product page GETs and orders", "product page and orders",
		"T0: the sale starts", "sold out at T+", "time from T0", "Stock left", "Latency distribution", "errors&lt;1"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	if bytes.Contains(page, []byte("<script")) {
		t.Errorf("HTML report has scripts")
	}
	res := readResult(t, js)
	if res.Audit == nil || !res.Audit.OK || res.Orders != 50 || res.Drop == nil || res.Drop.Lead != 1 || res.Page == nil {
		t.Errorf("results: orders %d, drop %+v, page %+v, audit %+v", res.Orders, res.Drop, res.Page, res.Audit)
	}
}

// TestDemoClosedLoop runs the demo before drops, a closed-loop sale, with a
// stock small enough to sell out even on a loaded machine.
func TestDemoClosedLoop(t *testing.T) {
	dir := t.TempDir()
	html, js := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.json")
	out, err := runArgs(t, "demo", "--closed-loop", "--duration", "3s", "--concurrency", "16", "--stock", "50", "--html", html,
		"--json", js, "--threshold", "errors<1%")
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if !strings.Contains(out, "audit: OK") {
		t.Errorf("no audit line in the demo's output")
	}
	if !regexp.MustCompile(`(?m)^The stock \(50 units\) lasted .*: 50 orders sold`).MatchString(out) {
		t.Errorf("the demo's headline does not say how long the stock lasted")
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatalf("HTML report: %v", err)
	}
	for _, want := range []string{"<svg", "Throughput", "Latency distribution", "Stock left", "sold out at", "errors&lt;1%"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	res := readResult(t, js)
	if res.Audit == nil || !res.Audit.OK || res.Orders == 0 || len(res.Series) < 3 || res.Drop != nil || res.Mode != "closed" {
		t.Errorf("results: mode %s, orders %d, %d intervals, audit %+v", res.Mode, res.Orders, len(res.Series), res.Audit)
	}
	if _, err := runArgs(t, "demo", "--closed-loop", "--lead", "2s"); err == nil || !strings.Contains(err.Error(), "--lead") {
		t.Errorf("--closed-loop with --lead: %v", err)
	}
}

// TestRunEndToEnd runs every scenario knob against an orderd on :0 (SQLite);
// the audit must pass.
func TestRunEndToEnd(t *testing.T) {
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "r.json")
	t.Run("closed", func(t *testing.T) {
		_, err := runArgs(t, "run", "--url", e.URL+","+e.URL, "--admin-token", e.AdminToken, "--requests", "300",
			"--concurrency", "8", "--skus", "4", "--zipf", "1.3", "--multi-share", "0.3", "--users", "40",
			"--per-user-limit", "3", "--retry-share", "0.2", "--warmup", "200ms", "--json", js)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		var res loadtest.Result
		b, _ := os.ReadFile(js)
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if !res.Audit.OK || res.Requests != 300 || res.Audit.Orders == 0 {
			t.Fatalf("requests %d, audit %+v", res.Requests, res.Audit)
		}
		limited := false
		for _, a := range res.Answers {
			limited = limited || a.Code == "limit_exceeded"
		}
		if !limited {
			t.Errorf("40 users x 300 orders with a limit of 3: no limit_exceeded: %+v", res.Answers)
		}
	})
	t.Run("open", func(t *testing.T) {
		out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--rate", "100",
			"--duration", "1s", "--concurrency", "20", "--stock", "50", "--quiet")
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		// Stock 50 at 100/s for a second: the rest is sold out, and no oversell.
		if !strings.Contains(out, "409 sold_out") || !strings.Contains(out, "audit: OK") {
			t.Errorf("want sold_out answers and a passing audit")
		}
	})
}

// TestRunBrokenServerFails: a server that answers 201 for an order it then
// does not have must fail the run (exit status 1 in main).
func TestRunBrokenServerFails(t *testing.T) {
	srv := httptest.NewServer(fakeorderd.New(fakeorderd.LoseOrder))
	defer srv.Close()
	out, err := runArgs(t, "run", "--url", srv.URL, "--admin-token", "x", "--requests", "50", "--concurrency", "4")
	if !errors.Is(err, loadtest.ErrAuditFailed) {
		t.Fatalf("run returned %v, want ErrAuditFailed", err)
	}
	if !strings.Contains(out, "AUDIT FAILED") || !strings.Contains(out, "lost order") {
		t.Errorf("the failure is not reported loudly")
	}
}

func TestUsage(t *testing.T) {
	if _, err := runArgs(t); err == nil {
		t.Error("no command: want an error")
	}
	if _, err := runArgs(t, "bogus"); err == nil {
		t.Error("unknown command: want an error")
	}
	if _, err := runArgs(t, "run", "--url", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "admin-token") {
		t.Errorf("run without a token: %v", err)
	}
}

// buildOrderd builds the orderd binary for compare's tests.
func buildOrderd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orderd")
	build := exec.Command("go", "build", "-o", bin, "github.com/flashorder/flashorder/cmd/orderd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build orderd: %v\n%s", err, out)
	}
	return bin
}

// TestCompare runs compare with the real orderd binary: the ceiling row, the
// row strategy with a passing audit, and a strategy orderd refuses, reported
// as a failed row rather than skipped; on SQLite, and with --fresh-db on
// PostgreSQL and MariaDB.
func TestCompare(t *testing.T) {
	bin := buildOrderd(t)
	targets := [][]string{{"sqlite"}}
	for _, v := range []string{"FLASHORDER_TEST_POSTGRES_URL", "FLASHORDER_TEST_MYSQL_URL"} {
		if u := testenv.Optional(t, v); u != "" {
			targets = append(targets, []string{strings.ToLower(strings.Split(u, ":")[0]), "--db", u, "--fresh-db"})
		}
	}
	for _, target := range targets {
		t.Run(target[0], func(t *testing.T) {
			dir := t.TempDir()
			html := filepath.Join(dir, "c.html")
			args := append([]string{"compare", "--orderd", bin, "--strategies", "row,no-such-strategy", "--duration", "1s",
				"--concurrency", "4", "--quiet", "--html", html, "--csv", filepath.Join(dir, "s.csv")}, target[1:]...)
			out, err := runArgs(t, args...)
			if err != nil {
				t.Fatalf("compare: %v", err)
			}
			lines := strings.Split(out, "\n")
			find := func(prefix string) string {
				for _, l := range lines {
					if strings.HasPrefix(l, prefix) {
						return l
					}
				}
				t.Fatalf("no table row %q", prefix)
				return ""
			}
			if l := find("no-op ceiling "); !strings.Contains(l, "100.0%") || !strings.HasSuffix(l, "n/a") {
				t.Errorf("ceiling row: %q", l)
			}
			if l := find("row "); !strings.HasSuffix(l, " ok") {
				t.Errorf("row strategy row: %q", l)
			}
			if l := find("no-such-strategy "); !strings.Contains(l, "FAILED") || !strings.Contains(l, "not supported") {
				t.Errorf("refused strategy row: %q", l)
			}
			if strings.Contains(out, "warning:") {
				t.Errorf("compare warned (a fresh database not dropped?)")
			}
			for _, f := range []string{"s-no-op-ceiling.csv", "s-row.csv"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("--csv: %v", err)
				}
			}
			// The ceiling is a reference line across the bars, not a bar.
			if page, err := os.ReadFile(html); err != nil || !bytes.Contains(page, []byte("Orders per second")) ||
				!bytes.Contains(page, []byte(`<line class="ref"`)) || !bytes.Contains(page, []byte("no-op ceiling: ")) {
				t.Errorf("compare HTML report (%v): no bar chart with the ceiling as a reference line", err)
			}
		})
	}
}

// TestNoopCmd serves the no-op ceiling for an external tool and stops with
// its context.
func TestNoopCmd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"noop", "--listen", addr}, &stdout, &stderr) }()
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = http.Post("http://"+addr+"/api/v1/orders", "application/json", strings.NewReader(`{}`)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("no-op answered %d, want 201", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("noop: %v", err)
	}
}

// TestVersionAndDemoHelp checks orderbench --version, and that demo -h shows
// the demo's own defaults (a drop of 2,000 units for 20,000 users after a 5s
// lead), not run's.
func TestVersionAndDemoHelp(t *testing.T) {
	out, err := runArgs(t, "--version")
	if err != nil || !strings.HasPrefix(out, "orderbench ") || !strings.Contains(out, "go1.") {
		t.Errorf("--version: %q, %v", out, err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"demo", "-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("demo -h: %v", err)
	}
	help := strings.Join(strings.Fields(stderr.String()), " ")
	for _, want := range []string{`(default "drop")`, "(default 5s)", "(default 3s)", "(default 1m0s)", "(default 2000)", "(default 20000)"} {
		if !strings.Contains(help, want) {
			t.Errorf("demo -h lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(help, "(default 10s)") && strings.Contains(help, "measured time (0 with --requests: until that many requests) (default 10s)") {
		t.Errorf("demo -h shows run's duration default")
	}
}

// TestThresholdExit: a failed --threshold is an error of its own, exit status
// 2, while a failed audit stays 1 even when thresholds fail too.
func TestThresholdExit(t *testing.T) {
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	args := []string{"run", "--url", e.URL, "--admin-token", e.AdminToken, "--requests", "100", "--concurrency", "4", "--quiet"}
	if _, err := runArgs(t, append(args, "--threshold", "errors<1%", "--threshold", "p99<1m")...); err != nil {
		t.Errorf("thresholds that hold: %v", err)
	}
	out, err := runArgs(t, append(args, "--threshold", "rate>100000000")...)
	if !errors.Is(err, loadtest.ErrThresholdFailed) || exitCode(err) != 2 {
		t.Errorf("a threshold that fails: %v (exit %d), want ErrThresholdFailed and exit 2", err, exitCode(err))
	}
	if !strings.Contains(out, "threshold  rate>100000000") || !strings.Contains(out, "FAILED") {
		t.Errorf("the summary does not show the failed threshold")
	}
	if _, err := runArgs(t, append(args, "--threshold", "p99<")...); err == nil {
		t.Errorf("a malformed threshold was accepted")
	}
	both := errors.Join(loadtest.ErrAuditFailed, loadtest.ErrThresholdFailed)
	if exitCode(both) != 1 || exitCode(errors.New("other")) != 1 {
		t.Errorf("exit codes: audit and threshold %d, other %d; want 1 and 1", exitCode(both), exitCode(errors.New("other")))
	}
}
