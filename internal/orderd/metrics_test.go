package orderd

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/doccheck"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// scrape is one read of /metrics: series ("name{labels}") to value, and the
// metric families with their types.
type scrape struct {
	series   map[string]float64
	families map[string]string
}

func scrapeMetrics(t *testing.T, baseURL string) scrape {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := scrape{series: map[string]float64{}, families: map[string]string{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			s.families[name] = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMetricsMoveWithOrders is the acceptance check of the metrics: orders
// flowing through the batch strategy move the batch sizes, the transaction
// times, the request latencies and the order counters on /metrics, and the
// sweeper's election shows through the lock metrics.
func TestMetricsMoveWithOrders(t *testing.T) {
	// --sold-out-ttl 0: every order, the sold-out ones too, goes through a
	// batch (the memo would answer some of the last ones without one).
	m, c := startOrderd(t, testenv.SQLiteURL(t), "--strategy", "batch", "--sweep-interval", "20ms", "--sold-out-ttl", "0")
	putProduct(t, c, "metrics-1", 150, 0)
	before := scrapeMetrics(t, m.URL())

	const orders = 200
	var wg sync.WaitGroup
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CreateOrder(context.Background(), order(fmt.Sprintf("mu-%d", i), item("metrics-1", 1)), "")
			if code := errCode(t, err); code != "" && code != "sold_out" {
				t.Errorf("order %d: %v", i, err)
			}
		}()
	}
	wg.Wait()

	var after scrape
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = scrapeMetrics(t, m.URL())
		if after.series[`flashorder_sweeper_runs_total{result="ok"}`] >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	delta := func(series string) float64 { return after.series[series] - before.series[series] }

	sizeSum, sizeCount := delta("flashorder_batch_size_sum"), delta("flashorder_batch_size_count")
	if sizeSum != orders || sizeCount < 1 || sizeCount > orders {
		t.Errorf("batch sizes moved by sum %v count %v; want sum %d over 1..%d batches", sizeSum, sizeCount, orders, orders)
	}
	if n := delta("flashorder_batch_transaction_seconds_count"); n != sizeCount || delta("flashorder_batch_transaction_seconds_sum") <= 0 {
		t.Errorf("batch transaction times moved by count %v, want %v, and a positive sum", n, sizeCount)
	}
	if n := delta("flashorder_batch_rows_held_seconds_count"); n != sizeCount || delta("flashorder_batch_rows_held_seconds_sum") <= 0 {
		t.Errorf("batch rows held moved by count %v, want %v (every batch committed), and a positive sum", n, sizeCount)
	}
	if got := delta(`flashorder_batch_size_bucket{le="+Inf"}`); got != sizeCount {
		t.Errorf("batch size +Inf bucket moved by %v, want %v", got, sizeCount)
	}
	if n := delta(`flashorder_http_request_duration_seconds_count{method="POST",route="/api/v1/orders"}`); n != orders {
		t.Errorf("order latency histogram moved by %v, want %d", n, orders)
	}
	for series, want := range map[string]float64{
		`flashorder_orders_created_total`:                                                 150,
		`flashorder_orders_refused_total{code="sold_out"}`:                                50,
		`flashorder_http_requests_total{code="201",method="POST",route="/api/v1/orders"}`: 150,
		`flashorder_http_requests_total{code="409",method="POST",route="/api/v1/orders"}`: 50,
	} {
		if got, ok := after.series[series]; !ok || got-before.series[series] != want {
			t.Errorf("%s moved by %v (present: %v), want %v", series, got-before.series[series], ok, want)
		}
	}
	for series, want := range map[string]float64{
		`flashorder_batch_queue_depth`:                  0,
		`flashorder_batch_errors_total`:                 0,
		`flashorder_sweeper_leader`:                     1,
		`flashorder_locks_lost_total{backend="memory"}`: 0,
	} {
		if got, ok := after.series[series]; !ok || got != want {
			t.Errorf("%s is %v (present: %v), want %v", series, got, ok, want)
		}
	}
	if after.series[`flashorder_lock_wait_seconds_count{backend="memory"}`] < 1 {
		t.Error("the sweeper's lock is not in flashorder_lock_wait_seconds")
	}
	if after.series[`flashorder_sweeper_runs_total{result="ok"}`] < 1 {
		t.Error("flashorder_sweeper_runs_total did not move within 10s at --sweep-interval 20ms")
	}
	if after.series["go_goroutines"] <= 0 || after.series["process_start_time_seconds"] <= 0 {
		t.Error("the Go runtime and process metrics are missing")
	}

	// The lock strategy's own family shows on an orderd that runs it, and
	// its orders' locks are measured like the sweeper's.
	lm, lc := startOrderd(t, testenv.SQLiteURL(t), "--strategy", "lock")
	putProduct(t, lc, "metrics-lock", 5, 0)
	testenv.WaitFor(t, "the sweeper to lead", 15*time.Second, func() bool {
		return scrapeMetrics(t, lm.URL()).series["flashorder_sweeper_leader"] == 1
	})
	lockBefore := scrapeMetrics(t, lm.URL())
	if _, err := lc.CreateOrder(context.Background(), order("ml-1", item("metrics-lock", 1)), ""); err != nil {
		t.Fatal(err)
	}
	lockScrape := scrapeMetrics(t, lm.URL())
	if got, ok := lockScrape.series["flashorder_lock_fence_refusals_total"]; !ok || got != 0 {
		t.Errorf("flashorder_lock_fence_refusals_total under --strategy lock is %v (present: %v), want 0", got, ok)
	}
	// The leading sweeper holds its lock throughout: the one order is the
	// only new wait and the only new hold.
	for _, series := range []string{`flashorder_lock_wait_seconds_count{backend="memory"}`, `flashorder_lock_hold_seconds_count{backend="memory"}`} {
		if d := lockScrape.series[series] - lockBefore.series[series]; d != 1 {
			t.Errorf("%s moved by %v over one order, want 1", series, d)
		}
	}
	for name, typ := range lockScrape.families {
		after.families[name] = typ
	}

	// The waiting room's families show once a queue is served: one buyer
	// joins, is admitted and orders with the token (stock 10, factor 1.5).
	if a := putDrop(t, m.URL(), "metrics-q", 10, 0, time.Time{}, time.Time{}, `,"admission":"queue"`); a.status != 200 {
		t.Fatalf("put the queued product: %d %s", a.status, a.body)
	}
	p, a := join(t, m.URL(), "metrics-q", "mq-1")
	if a.status != 202 {
		t.Fatalf("join: %d %s", a.status, a.body)
	}
	tok := waitStatus(t, m.URL(), p.Ticket, "admitted").AdmissionToken
	if a := buyWith(t, m.URL(), "mq-1", "metrics-q", tok, ""); a.status != 201 {
		t.Fatalf("order with the admission: %d %s", a.status, a.body)
	}
	const q = `{queue="sku:metrics-q"}`
	var queueScrape scrape
	testenv.WaitFor(t, "the queue's metrics after the use", 10*time.Second, func() bool {
		queueScrape = scrapeMetrics(t, m.URL())
		return queueScrape.series["flashorder_queue_admissions_used"+q] == 1
	})
	for series, want := range map[string]float64{
		"flashorder_queue_waiting" + q: 0, "flashorder_queue_admissions_outstanding" + q: 0, "flashorder_queue_admitted_total" + q: 1,
		"flashorder_queue_committed" + q: 1, "flashorder_queue_bound" + q: 15, "flashorder_queue_bound_exceeded_total" + q: 0,
		"flashorder_queue_polls_from_memory_total" + q: 0,
	} {
		if got, ok := queueScrape.series[series]; !ok || got != want {
			t.Errorf("%s = %v (present: %v), want %v", series, got, ok, want)
		}
	}
	for name, typ := range queueScrape.families {
		after.families[name] = typ
	}

	// docs/OPERATE.md's metrics table lists exactly the flashorder_* families
	// (of the batch and the lock strategy and the waiting room together).
	documented := doccheck.Metrics(t)
	for _, name := range sortedFamilies(after.families) {
		if !strings.HasPrefix(name, "flashorder_") {
			continue
		}
		typ, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("docs/OPERATE.md's metrics table does not document %s", name)
		case typ != after.families[name]:
			t.Errorf("docs/OPERATE.md says %s is a %s, /metrics says %s", name, typ, after.families[name])
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("docs/OPERATE.md documents %s, which /metrics does not show", name)
	}
}

func sortedFamilies(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
