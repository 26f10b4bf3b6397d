package orderd

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/redis"
)

// redisSetup returns a fresh PostgreSQL database and a Redis server of the
// test's own (it may be flushed or stopped); the test skips when either is
// missing.
func redisSetup(t *testing.T) (dbURL string, r *testenv.RedisServer) {
	t.Helper()
	dbURL, r = testenv.PostgresURL(t), testenv.PrivateRedis(t)
	return dbURL, r
}

func redisClient(t *testing.T, url string) *redis.IdempotencyStore {
	t.Helper()
	c, err := redis.OpenClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := redis.NewIdempotencyStore(c)
	s.Strict, s.Timeout = true, time.Second
	return s
}

func flushAll(t *testing.T, url string) {
	t.Helper()
	c, err := redis.OpenClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
}

// TestOrderdRedis runs orderd with --idempotency redis:// on PostgreSQL.
func TestOrderdRedis(t *testing.T) {
	dbURL, r := redisSetup(t)
	_, c := startOrderd(t, dbURL, "--idempotency", r.URL, "--idempotency-claim-ttl", "1s")

	// Replays, 422 for another body, stored refusals, 400s not stored, and
	// 100 concurrent duplicates making one order: the API's idempotency
	// suite, now on Redis.
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, c) })

	t.Run("FlushAllBeforeReplay", func(t *testing.T) {
		putProduct(t, c, "flush-1", 5, 0)
		body := `{"user_id":"fu-1","items":[{"sku":"flush-1","quantity":1}]}`
		first := postRaw(t, c.BaseURL, "flush-key", body)
		flushAll(t, r.URL)
		replay := postRaw(t, c.BaseURL, "flush-key", body)
		if first.status != 201 || replay.status != 201 || replay.body != first.body || replay.location != first.location || replay.replayed != "true" {
			t.Fatalf("replay after FLUSHALL: %+v, first %+v", replay, first)
		}
		if p := getProduct(t, c, "flush-1"); p.Stock != 4 || p.Sold != 1 {
			t.Fatalf("after the replay: stock %d sold %d, want 4 and 1", p.Stock, p.Sold)
		}
	})

	// An owner that committed its order, then died before completing its
	// claim: the retry finds the order in the database at once. An owner
	// that died before committing: the claim expires after
	// --idempotency-claim-ttl and the retry runs.
	t.Run("DeadOwner", func(t *testing.T) {
		putProduct(t, c, "dead-1", 5, 0)
		db, err := gormdb.Open(context.Background(), dbURL, gormdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		req := &flashorder.PlaceOrderRequest{OrderRequest: order("du-1", item("dead-1", 1)), IdempotencyKey: "dead-key"}
		req.Fingerprint = req.OrderRequest.Fingerprint()
		stale := redisClient(t, r.URL)
		stale.ClaimTTL = time.Second // as the orderd that died had
		if rec, err := stale.Claim(context.Background(), "dead-key", req.Fingerprint); rec != nil || err != nil {
			t.Fatalf("stale claim: %+v %v", rec, err)
		}
		committed, err := checkout.NewRow(db).PlaceOrder(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		body := `{"user_id":"du-1","items":[{"sku":"dead-1","quantity":1}]}`
		// The dead owner's claim still lives, but its order was committed:
		// the retry replays it from the database at once.
		a := postRaw(t, c.BaseURL, "dead-key", body)
		var o flashorder.Order
		if a.status != 201 || json.Unmarshal([]byte(a.body), &o) != nil || o.ID != committed.ID || a.replayed != "true" {
			t.Fatalf("retry while the dead owner's claim lives: %+v, committed %s", a, committed.ID)
		}
		// A claim whose owner died before committing stays in progress
		// until it expires; then the retry runs.
		if rec, err := stale.Claim(context.Background(), "dead-key-2", req.Fingerprint); rec != nil || err != nil {
			t.Fatalf("stale claim: %+v %v", rec, err)
		}
		if a := postRaw(t, c.BaseURL, "dead-key-2", body); a.status != 409 || !strings.Contains(a.body, flashorder.EINPROGRESS) {
			t.Fatalf("while the dead owner's claim lives: %+v", a)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			a := postRaw(t, c.BaseURL, "dead-key-2", body)
			if a.status == 201 && a.replayed != "true" {
				break
			}
			if a.status != 409 || time.Now().After(deadline) {
				t.Fatalf("retry after the claim expired: %+v", a)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if p := getProduct(t, c, "dead-1"); p.Stock != 3 {
			t.Fatalf("stock %d, want 3 (two orders): a retry took stock", p.Stock)
		}
	})
	assertAudit(t, c)
}

// TestOrderdRedisShared runs two instances on one database and one Redis: a
// key claimed on one is in progress on the other, rate limits are shared, and
// stock added through one clears the sold-out mark of the other's gate.
func TestOrderdRedisShared(t *testing.T) {
	dbURL, r := redisSetup(t)
	args := []string{"--idempotency", r.URL, "--rate-limit-user", "3/s", "--sold-out-ttl", "1m"}
	_, a := startOrderd(t, dbURL, args...)
	_, b := startOrderd(t, dbURL, args...)

	t.Run("RateLimit", func(t *testing.T) {
		putProduct(t, a, "rl-1", 1000, 0)
		codes := map[int]int{}
		var retryAfter string
		for i := range 6 {
			base := a.BaseURL
			if i%2 == 1 {
				base = b.BaseURL
			}
			st, h := postWithHeaders(t, base, "", `{"user_id":"rlu-1","items":[{"sku":"rl-1","quantity":1}]}`)
			codes[st]++
			if st == 429 {
				retryAfter = h.Get("Retry-After")
			}
		}
		if codes[201] != 3 || codes[429] != 3 || retryAfter != "1" {
			t.Fatalf("6 orders at 3/s across two instances: %v, Retry-After %q", codes, retryAfter)
		}
		if st, _ := postWithHeaders(t, b.BaseURL, "", `{"user_id":"rlu-2","items":[{"sku":"rl-1","quantity":1}]}`); st != 201 {
			t.Fatalf("another user: %d", st)
		}
		time.Sleep(time.Second)
		if st, _ := postWithHeaders(t, a.BaseURL, "", `{"user_id":"rlu-1","items":[{"sku":"rl-1","quantity":1}]}`); st != 201 {
			t.Fatalf("after Retry-After: %d", st)
		}
	})

	t.Run("SoldOutMemo", func(t *testing.T) {
		putProduct(t, a, "so-1", 0, 0)
		// A user per request: the rate limit of 3/s must not interfere.
		n := 0
		body := func() string {
			n++
			return fmt.Sprintf(`{"user_id":"sou-%d","items":[{"sku":"so-1","quantity":1}]}`, n)
		}
		for range 3 {
			if st, _ := postWithHeaders(t, a.BaseURL, "", body()); st != 409 {
				t.Fatalf("sold out: %d", st)
			}
		}
		putProduct(t, b, "so-1", 1, 0) // through the other instance
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, _ := postWithHeaders(t, a.BaseURL, "", body())
			if st == 201 {
				break
			}
			if st != 409 || time.Now().After(deadline) {
				t.Fatalf("A never saw the stock added through B: %d", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	assertAudit(t, a)
}

func postWithHeaders(t *testing.T, base, key, body string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := (&http.Client{Transport: transport, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestOrderdRedisDown stops Redis in the middle of a run: orderd keeps
// accepting orders on the database guard, never makes a duplicate, reports
// Redis in /readyz, and uses Redis again once it is back.
func TestOrderdRedisDown(t *testing.T) {
	dbURL, r := redisSetup(t)
	_, c := startOrderd(t, dbURL, "--idempotency", r.URL, "--rate-limit-user", "100/s")
	putProduct(t, c, "down-1", 1000, 0)

	// Each key sent twice at once, each under its own user: exactly one
	// order per user, every answer 201 (created or replayed) or in progress.
	round := func(from, to int) map[string]int {
		var reqs []flashorder.OrderRequest
		var keys []string
		for i := from; i < to; i++ {
			for range 2 {
				reqs = append(reqs, order(fmt.Sprintf("du-%d", i), item("down-1", 1)))
				keys = append(keys, fmt.Sprintf("down-key-%d", i))
			}
		}
		counts, _ := placeConcurrently(t, c, reqs, keys)
		if counts["created"] != to-from || counts["created"]+counts["replayed"]+counts[flashorder.EINPROGRESS] != 2*(to-from) {
			t.Fatalf("keys %d..%d sent twice: %v, want %d created and the rest replayed or in progress", from, to, counts, to-from)
		}
		return counts
	}
	round(0, 20)
	if st, checks := readyz(t, c.BaseURL); st != 200 || checks["redis"] != "ok" {
		t.Fatalf("readyz with Redis up: %d %v", st, checks)
	}

	r.Stop(t)
	if st, checks := readyz(t, c.BaseURL); st != 503 || checks["redis"] != "unavailable" || checks["db"] != "ok" {
		t.Fatalf("readyz with Redis down: %d %v", st, checks)
	}
	round(20, 40)
	// Keys used while Redis was up replay from the database.
	for i := range 20 {
		res, err := c.CreateOrder(context.Background(), order(fmt.Sprintf("du-%d", i), item("down-1", 1)), fmt.Sprintf("down-key-%d", i))
		if err != nil || !res.Replayed {
			t.Fatalf("replay of key %d with Redis down: %+v %v", i, res, err)
		}
	}

	r.Restart(t)
	waitReady(t, c.BaseURL)
	round(40, 60)
	for i := range 60 {
		orders, _, err := c.Orders(context.Background(), fmt.Sprintf("du-%d", i), 10, "")
		if err != nil || len(orders) != 1 {
			t.Fatalf("user %d holds %d orders (%v), want 1", i, len(orders), err)
		}
	}
	if p := getProduct(t, c, "down-1"); p.Sold != 60 {
		t.Fatalf("%d sold, want 60", p.Sold)
	}
	assertAudit(t, c)
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, _ := readyz(t, base); st == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("orderd not ready 10 s after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockProduct holds the row lock of sku in an open transaction until the
// returned function is called, so that orders for it wait.
func lockProduct(t *testing.T, dbURL, sku string) (unlock func()) {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE", sku); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() { once.Do(func() { tx.Rollback(); db.Close() }) }
	t.Cleanup(unlock)
	return unlock
}

// waitLockWaiters waits until n sessions of the database wait for a lock.
func waitLockWaiters(t *testing.T, dbURL string, n int) {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for the lock after 20 s, want %d", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOrderdOverload makes the database slow for one SKU (its row locked by
// another transaction) and checks shedding, then a 5xx followed by a
// successful retry under the same key.
func TestOrderdOverload(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	t.Run("Shedding", func(t *testing.T) {
		_, c := startOrderd(t, dbURL, "--strategy", "row", "--max-inflight", "4") // row: one database waiter per request
		putProduct(t, c, "shed-1", 100, 0)
		unlock := lockProduct(t, dbURL, "shed-1")
		var wg sync.WaitGroup
		held := make(chan int, 4)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, _ := postWithHeaders(t, c.BaseURL, "", fmt.Sprintf(`{"user_id":"sh-%d","items":[{"sku":"shed-1","quantity":1}]}`, i))
				held <- st
			}()
		}
		// Wait until the four wait for the row lock (every slot taken), then overflow.
		waitLockWaiters(t, dbURL, 4)
		for range 20 {
			st, h := postWithHeaders(t, c.BaseURL, "", `{"user_id":"sh-x","items":[{"sku":"shed-1","quantity":1}]}`)
			if st != 503 || h.Get("Retry-After") != "1" {
				unlock()
				t.Fatalf("beyond --max-inflight: %d", st)
			}
		}
		unlock()
		wg.Wait()
		close(held)
		for st := range held {
			if st != 201 {
				t.Fatalf("a held order got %d", st)
			}
		}
		if st, _ := postWithHeaders(t, c.BaseURL, "", `{"user_id":"sh-after","items":[{"sku":"shed-1","quantity":1}]}`); st != 201 {
			t.Fatalf("after the load: %d", st)
		}
	})

	t.Run("RetryAfter5xx", func(t *testing.T) {
		r := testenv.PrivateRedis(t)
		// A waiting order fails (503 unavailable) after --order-timeout.
		_, c := startOrderd(t, dbURL, "--idempotency", r.URL, "--order-timeout", "1s")
		putProduct(t, c, "fail-1", 10, 0)
		unlock := lockProduct(t, dbURL, "fail-1")
		body := `{"user_id":"fl-1","items":[{"sku":"fail-1","quantity":1}]}`
		if a := postRaw(t, c.BaseURL, "fail-key", body); a.status != 503 {
			t.Fatalf("order on a locked row: %+v", a)
		}
		unlock()
		if a := postRaw(t, c.BaseURL, "fail-key", body); a.status != 201 || a.replayed != "" {
			t.Fatalf("retry after the 5xx: %+v", a)
		}
		if p := getProduct(t, c, "fail-1"); p.Stock != 9 {
			t.Fatalf("stock %d, want 9", p.Stock)
		}
	})
}

// TestOrderTimeout holds a product's row lock in another transaction: an order
// that waits for it past --order-timeout answers 503 unavailable and changes
// nothing, and the same order goes through once the lock is gone.
func TestOrderTimeout(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	_, c := startOrderd(t, dbURL, "--strategy", "row", "--order-timeout", "500ms")
	putProduct(t, c, "slow-1", 10, 0)
	unlock := lockProduct(t, dbURL, "slow-1")
	body := `{"user_id":"slow-user","items":[{"sku":"slow-1","quantity":1}]}`
	start := time.Now()
	st, h := postWithHeaders(t, c.BaseURL, "slow-key", body)
	if st != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("order waiting for a locked row past --order-timeout: %d", st)
	}
	if waited := time.Since(start); waited > 8*time.Second {
		t.Fatalf("the timed-out order answered after %v", waited)
	}
	unlock()
	if p := getProduct(t, c, "slow-1"); p.Stock != 10 || p.Sold != 0 {
		t.Fatalf("the timed-out order changed stock: %+v", p)
	}
	if st, _ := postWithHeaders(t, c.BaseURL, "slow-key", body); st != 201 {
		t.Fatalf("the retry after the lock is gone: %d", st)
	}
	assertAudit(t, c)
}
