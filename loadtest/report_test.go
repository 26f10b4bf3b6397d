package loadtest_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"image"
	"image/png"
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
	"github.com/flashorder/flashorder/loadtest/report"
)

// saleRun runs a short sale that sells out against a correct fake: 150 units
// for up to 3 s.
func saleRun(t *testing.T) *loadtest.Result {
	t.Helper()
	fake := fakeorderd.New(fakeorderd.None)
	fake.Delay = time.Millisecond
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cfg := fakeConfig(srv.URL)
	cfg.Requests = 0
	cfg.Concurrency = 8
	cfg.Duration = 3 * time.Second
	cfg.Scenario = loadtest.Scenario{Stock: 150, PerUserLimit: 1, Users: 2000}
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(res.SoldOut) != 1 || res.SoldOut[0].SKU != "bench-0" || res.Orders != 150 {
		t.Fatalf("the sale did not sell out: sold out %+v, %d orders", res.SoldOut, res.Orders)
	}
	return res
}

// TestSaleStory checks what the report tells of a sale that sells out: the
// headline says how long the stock lasted and how many orders it sold;
// buckets are 100 ms for a short run; the stock per SKU reaches 0 when the
// sell-out happened; refusals are not errors; the CSV has one row per bucket
// and the .hgrm is HdrHistogram's format.
func TestSaleStory(t *testing.T) {
	res := saleRun(t)
	at := res.SoldOut[0].At
	if h := report.Headline(res); !regexp.MustCompile(`^The stock \(150 units\) lasted \d+(\.\d+)? m?s: 150 orders sold .* 0 errors`).MatchString(h) {
		t.Errorf("headline %q", h)
	}
	if res.BucketSeconds != 0.1 || len(res.Series) < 6 {
		t.Errorf("bucket %vs, %d intervals; want 0.1s buckets for a 3s run", res.BucketSeconds, len(res.Series))
	}
	if res.Errors != 0 || res.Refused == 0 || res.Refused+res.Orders != res.Requests {
		t.Errorf("errors %d, refused %d, orders %d, requests %d", res.Errors, res.Refused, res.Orders, res.Requests)
	}
	// The stock per SKU only falls, and first shows 0 in the interval that
	// holds the sell-out: the interval's span, however late the collector's
	// ticker fired, contains the moment of the last unit's 201 (give or take
	// the few statements between taking that time and counting the unit).
	const slack = 0.05
	prev, zeroFrom, zeroAt := int64(150), -1.0, -1.0
	for _, iv := range res.Series {
		if len(iv.SKUStock) != 1 || iv.SKUStock[0] > prev {
			t.Fatalf("interval %+v: no per-SKU stock, or it rose from %d", iv, prev)
		}
		prev = iv.SKUStock[0]
		if prev == 0 && zeroAt < 0 {
			zeroFrom, zeroAt = iv.T-iv.Seconds, iv.T
		}
	}
	if zeroAt < 0 || at < zeroFrom-slack || at > zeroAt+slack {
		t.Errorf("the stock first shows 0 in the interval %.3fs to %.3fs, but the sell-out was at %.3fs", zeroFrom, zeroAt, at)
	}
	var b bytes.Buffer
	if err := report.WriteCSV(&b, res); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(rows) != len(res.Series)+1 {
		t.Fatalf("CSV: %d rows for %d intervals, %v", len(rows), len(res.Series), err)
	}
	if h := strings.Join(rows[0], ","); !strings.HasPrefix(h, "t_s,seconds,") || !strings.Contains(h, "answers 201") ||
		!strings.Contains(h, "stock bench-0") {
		t.Errorf("CSV header %q", h)
	}
	b.Reset()
	if err := report.WriteHgrm(&b, res); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); !strings.HasPrefix(s, " Value\tPercentile\tTotalCount\t1/(1-Percentile)") ||
		!strings.Contains(s, "#[Mean    =") || !strings.Contains(s, fmt.Sprintf("Total count    = %12d]", res.Requests)) {
		t.Errorf(".hgrm output:\n%s", s)
	}
}

// TestReportInBrowser renders the HTML report of a sale in headless
// Chromium: the DOM has the summary, the audit and five charts with drawn
// series, and a screenshot shows the 201s' green and the sold-outs' orange.
func TestReportInBrowser(t *testing.T) {
	dom, img := renderInBrowser(t, saleRun(t))
	if n := bytes.Count(dom, []byte(`<svg class="chart"`)); n != 5 {
		t.Errorf("the browser's DOM has %d charts, want 5", n)
	}
	for _, want := range []string{"lasted", `class="audit"`, "audit: OK", `class="summary"`, "409 sold_out", "sold out at"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("the browser's DOM lacks %q", want)
		}
	}
	if green, orange := stacked(img); green < 500 || orange < 5000 {
		t.Errorf("the screenshot has %d green (201) and %d orange (sold_out) pixels; the answers by kind were not drawn", green, orange)
	}
}

// TestDropReportInBrowser renders a drop's report: it opens with the
// figures and three charts from T0 (answers by kind, the product page beside
// the orders), T0 and the sell-out marked, then the other three.
func TestDropReportInBrowser(t *testing.T) {
	srv := httptest.NewServer(newWindowed(fakeorderd.None))
	defer srv.Close()
	res, err := loadtest.Run(context.Background(), dropConfig(srv.URL))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	dom, img := renderInBrowser(t, res)
	if n := bytes.Count(dom, []byte(`<svg class="chart"`)); n != 6 {
		t.Errorf("the browser's DOM has %d charts, want 6", n)
	}
	for _, want := range []string{`class="tile"`, "orders before the start", "first order accepted", "the stock lasted",
		"T0: the sale starts", "sold out at T+", "time from T0 (starts_at)", "product page GETs/s", "page p99", "audit: OK"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("the browser's DOM lacks %q", want)
		}
	}
	if bytes.Contains(dom, []byte(`class="tile bad"`)) {
		t.Errorf("a healthy drop's report shows a figure in red")
	}
	if green, orange := stacked(img); green < 100 || orange < 5000 {
		t.Errorf("the screenshot has %d green (201) and %d orange (sold_out) pixels; the answers by kind were not drawn", green, orange)
	}
}

// renderInBrowser writes res's HTML report, checks that it is
// self-contained, and returns the DOM headless Chromium made of it and a
// screenshot of its top.
func renderInBrowser(t *testing.T, res *loadtest.Result) ([]byte, image.Image) {
	t.Helper()
	chromium := testenv.Tool(t, "chromium")
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := report.WriteHTMLFile(page, report.Page{Title: "orderbench test", Runs: []*loadtest.Result{res}}); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(page)
	if bytes.Contains(html, []byte("<script")) || bytes.Contains(html, []byte("src=\"http")) {
		t.Errorf("the report is not self-contained")
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + filepath.Join(dir, "profile")}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	shot := filepath.Join(dir, "report.png")
	if out, err := exec.CommandContext(ctx, chromium, append(args, "--screenshot="+shot, "--window-size=1400,2400", "file://"+page)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return dom, img
}

// stacked counts the pixels of the answers' stacked areas in img: 201 green
// and sold_out orange, drawn at 85% opacity over white.
func stacked(img image.Image) (green, orange int) {
	return countColor(img, 75, 174, 75), countColor(img, 255, 146, 50)
}

// countColor counts the pixels of img within a small distance of r, g, b.
func countColor(img image.Image, r, g, b uint8) int {
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr>>8, r) && near(pg>>8, g) && near(pb>>8, b) {
				n++
			}
		}
	}
	return n
}

func near(v uint32, want uint8) bool {
	d := int(v) - int(want)
	return d > -24 && d < 24
}
