package main

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
	"github.com/flashorder/flashorder/internal/testenv"
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
	if zk == nil {
		return
	}
	for _, db := range testenv.Databases(t) {
		t.Run(db.Engine, func(t *testing.T) {
			t.Parallel()
			_, c := startOrderd(t, db.URL, "--strategy", "lock", "--lock", zkLockURL(zk))
			t.Run("HotSKUConcurrency", func(t *testing.T) { testHotSKU(t, c) })
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
	if e := testenv.EtcdEndpoints(t); e != nil {
		backends = append(backends, [2]string{"etcd", "etcd://" + strings.Join(e, ",") + "/flashorder-test/" + locktest.Key("orderd") + "/"})
	}
	if r := testenv.Service(t, "FLASHORDER_TEST_REDIS_URL"); r != "" {
		backends = append(backends, [2]string{"redis", r})
	}
	for _, b := range backends {
		t.Run(b[0], func(t *testing.T) {
			_, c := startOrderd(t, testenv.SQLiteURL(t), "--strategy", "lock", "--lock", b[1])
			putProduct(t, c, "hot-2", 30, 0)
			reqs := make([]flashorder.OrderRequest, 300)
			for i := range reqs {
				reqs[i] = order(fmt.Sprintf("hot2-user-%d", i), item("hot-2", 1))
			}
			counts, _ := placeConcurrently(t, c, reqs, nil)
			if counts["created"] != 30 || counts[flashorder.ESOLDOUT] != 270 || len(counts) != 2 {
				t.Fatalf("300 orders for 30 units: %v, want 30 created and 270 sold_out", counts)
			}
			if l := auditLine(t, c, "hot-2"); l.Sold != 30 || l.Available != 0 || !l.OK {
				t.Fatalf("audit: %+v", l)
			}
			if status, checks := readyz(t, c.BaseURL); status != http.StatusOK || checks["lock"] != "ok" {
				t.Fatalf("/readyz: %d %v, want 200 with lock ok", status, checks)
			}
		})
	}
}

// TestOrderdLockReadyz cuts orderd off its lock service: /readyz answers 503
// naming the lock, and 200 again once the service is back.
func TestOrderdLockReadyz(t *testing.T) {
	zk := testenv.ZooKeeperAddrs(t)
	if zk == nil {
		return
	}
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
	if a := testenv.ZooKeeperAddrs(t); a != nil {
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
		if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := m.Run(ctx)
		cancel()
		m.Close(context.Background())
		if err == nil {
			t.Fatalf("--lock %s: orderd started", lock)
		}
		if _, perr := url.Parse(lock); perr == nil && !strings.Contains(err.Error(), "lock") && !strings.Contains(err.Error(), "zookeeper") {
			t.Errorf("--lock %s: error %q does not say what is wrong", lock, err)
		}
	}
}
