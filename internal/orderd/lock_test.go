package orderd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/locktest"
)

// zkLockURL returns a --lock URL for the test ZooKeeper under a fresh root.
func zkLockURL(addrs []string) string {
	return "zk://" + strings.Join(addrs, ",") + "/flashorder-test/" + locktest.Key("orderd")
}

// TestOrderdLockStrategy runs orderd with --strategy lock --lock zk://... on
// every database: 1,000 concurrent orders for 100 units, the per-user limit,
// multi-item orders and idempotency keep the invariants.
func TestOrderdLockStrategy(t *testing.T) {
	zk := testenv.ZooKeeperAddrs(t)
	// One database at a time: every order of a hot SKU passes through one
	// ZooKeeper lock, and the machine is shared with the other packages.
	for _, db := range testenv.Databases(t) {
		t.Run(db.Engine, func(t *testing.T) {
			_, c := startOrderd(t, db.URL, "--strategy", "lock", "--lock", zkLockURL(zk))
			t.Run("HotSKUConcurrency", func(t *testing.T) { testLockedHotSKU(t, c, "hot-1", 1000, 100) })
			t.Run("PerUserLimitConcurrency", func(t *testing.T) { testPerUserLimit(t, c) })
			t.Run("MultiItemAllOrNothing", func(t *testing.T) { testMultiItem(t, c) })
			t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, c) })
			assertAudit(t, c)
			if status, checks := readyz(t, c.BaseURL); status != http.StatusOK || checks["lock"] != "ok" {
				t.Fatalf("/readyz: %d %v, want 200 with lock ok", status, checks)
			}
		})
	}
}

// TestOrderdLockBackends runs a smaller hot-SKU sale (300 concurrent orders
// for 30 units) through the etcd and Redis locks.
func TestOrderdLockBackends(t *testing.T) {
	var backends [][2]string
	if e := testenv.OptionalAddrs(t, "FLASHORDER_TEST_ETCD_ENDPOINTS"); e != nil {
		backends = append(backends, [2]string{"etcd", "etcd://" + strings.Join(e, ",") + "/flashorder-test/" + locktest.Key("orderd") + "/"})
	}
	if r := testenv.Optional(t, "FLASHORDER_TEST_REDIS_URL"); r != "" {
		backends = append(backends, [2]string{"redis", r})
	}
	for _, b := range backends {
		t.Run(b[0], func(t *testing.T) {
			_, c := startOrderd(t, testenv.SQLiteURL(t), "--strategy", "lock", "--lock", b[1])
			testLockedHotSKU(t, c, "hot-2", 300, 30)
			if status, checks := readyz(t, c.BaseURL); status != http.StatusOK || checks["lock"] != "ok" {
				t.Fatalf("/readyz: %d %v, want 200 with lock ok", status, checks)
			}
		})
	}
}

// testLockedHotSKU sends n concurrent orders of one unit for stock units of
// sku. Every order queues for the SKU's lock; on a loaded machine the last
// ones may wait longer than the strategy's limit and get 503 overloaded,
// which is backpressure, not an error. The invariants must hold whatever the
// mix: no oversell, every 201 stored, and sold_out only once the stock is
// gone.
func testLockedHotSKU(t *testing.T, c *orderhttp.Client, sku string, n, stock int) {
	putProduct(t, c, sku, int64(stock), 0)
	reqs := make([]flashorder.OrderRequest, n)
	for i := range reqs {
		reqs[i] = order(fmt.Sprintf("%s-user-%d", sku, i), item(sku, 1))
	}
	start := time.Now()
	counts, created := placeConcurrently(t, c, reqs, nil)
	t.Logf("%d orders for %d units in %v: %v", n, stock, time.Since(start).Round(time.Millisecond), counts)
	if counts["created"]+counts[flashorder.ESOLDOUT]+counts[flashorder.EOVERLOADED] != n {
		t.Fatalf("%d orders for %d units: %v, want only created, sold_out and overloaded", n, stock, counts)
	}
	if counts["created"] > stock || counts["created"] == 0 {
		t.Fatalf("%d orders for %d units: %d created", n, stock, counts["created"])
	}
	if counts[flashorder.ESOLDOUT] > 0 && counts["created"] != stock {
		t.Fatalf("sold_out answered while stock was left: %v", counts)
	}
	l := auditLine(t, c, sku)
	if !l.OK || l.Sold != int64(counts["created"]) || l.Available != int64(stock-counts["created"]) {
		t.Fatalf("audit %+v after %v", l, counts)
	}
	for _, o := range created {
		got, err := c.Order(context.Background(), o.ID)
		if err != nil || got.UserID != o.UserID || got.Items[0] != o.Items[0] {
			t.Fatalf("order %s answered 201 but reads back as %+v, %v", o.ID, got, err)
		}
	}
}

// TestOrderdLockReadyz cuts orderd off its lock service: /readyz answers 503
// naming the lock, and 200 again once the service is back.
func TestOrderdLockReadyz(t *testing.T) {
	zk := testenv.ZooKeeperAddrs(t)
	proxy := locktest.NewProxy(t, zk[0])
	_, c := startOrderd(t, testenv.SQLiteURL(t), "--strategy", "lock", "--lock", zkLockURL([]string{proxy.Addr()})+"?session_timeout=30s")
	if status, checks := readyz(t, c.BaseURL); status != http.StatusOK || checks["lock"] != "ok" {
		t.Fatalf("/readyz: %d %v, want 200 with lock ok", status, checks)
	}
	proxy.Cut()
	if status, checks := readyz(t, c.BaseURL); status != http.StatusServiceUnavailable || checks["lock"] != "unavailable" || checks["db"] != "ok" {
		t.Fatalf("/readyz without ZooKeeper: %d %v, want 503 with lock unavailable", status, checks)
	}
	proxy.Resume()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, checks := readyz(t, c.BaseURL)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after ZooKeeper came back: %d %v", status, checks)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readyz(t *testing.T, base string) (int, map[string]string) {
	t.Helper()
	resp, err := (&http.Client{Transport: transport, Timeout: 10 * time.Second}).Get(base + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &body); err != nil {
		t.Fatalf("/readyz body %q: %v", data, err)
	}
	return resp.StatusCode, body.Checks
}

// TestOrderdLockURLs refuses --lock values it cannot use, before serving.
func TestOrderdLockURLs(t *testing.T) {
	zk := "127.0.0.1:1"
	if a := testenv.OptionalAddrs(t, "FLASHORDER_TEST_ZK_ADDRS"); a != nil {
		zk = a[0]
	}
	for _, lock := range []string{
		"consul://127.0.0.1:8500/x",
		"zk://" + zk + "/x?session_timeout=soon",
		"zk://" + zk + "/x?color=blue",
		"zk://" + zk + "/relative//path",
		"etcd://127.0.0.1:2379/x?ttl=-1s",
		"redis://127.0.0.1:6379/0?ttl=0s",
		"://nope",
	} {
		m := NewMain(io.Discard)
		args := []string{"--listen", "127.0.0.1:0", "--db", testenv.SQLiteURL(t), "--strategy", "lock", "--lock", lock}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := startErr(ctx, m, args...)
		cancel()
		if err == nil {
			t.Fatalf("--lock %s: orderd started", lock)
		}
		if _, perr := url.Parse(lock); perr == nil && !strings.Contains(err.Error(), "lock") && !strings.Contains(err.Error(), "zookeeper") {
			t.Errorf("--lock %s: error %q does not say what is wrong", lock, err)
		}
	}
}

// TestOrderdLockMemoryWarning: --strategy lock with the in-process lock on a
// database that other instances can share starts, with a warning; on SQLite
// it starts quietly.
func TestOrderdLockMemoryWarning(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		var log strings.Builder
		m := NewMain(&log)
		args := []string{"--listen", "127.0.0.1:0", "--db", db.URL, "--admin-token", adminToken, "--strategy", "lock"}
		if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background()); err != nil {
			t.Fatalf("%s: %v", db.Engine, err)
		}
		m.Close(context.Background())
		warned := strings.Contains(log.String(), "level=WARN") && strings.Contains(log.String(), "--lock memory")
		if warned != (db.Engine != "sqlite") {
			t.Errorf("%s: warned=%v; log:\n%s", db.Engine, warned, log.String())
		}
	}
}

// TestOrderdLockRedisSharesClient: --lock and --idempotency on one Redis
// share one client (one /readyz check "redis"), which Close closes once.
func TestOrderdLockRedisSharesClient(t *testing.T) {
	r := testenv.Optional(t, "FLASHORDER_TEST_REDIS_URL")
	if r == "" {
		t.Skip("FLASHORDER_TEST_REDIS_URL is not set")
	}
	m, c := startOrderd(t, testenv.SQLiteURL(t), "--strategy", "lock", "--lock", r, "--idempotency", r)
	if len(m.redisClients) != 1 {
		t.Fatalf("%d Redis clients for one Redis URL, want 1", len(m.redisClients))
	}
	testLockedHotSKU(t, c, "hot-3", 100, 10)
	if status, checks := readyz(t, c.BaseURL); status != http.StatusOK || checks["lock"] != "ok" || checks["redis"] != "ok" {
		t.Fatalf("/readyz: %d %v, want 200 with lock and redis ok", status, checks)
	}
}
