package orderd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

// natsPrefix returns a subject prefix of the test's own, whose stream is
// deleted from the cluster at servers when the test ends.
func natsPrefix(t *testing.T, servers string) string {
	t.Helper()
	return testenv.NATSPrefix(t, servers, "orderd", relay.StreamName)
}

// consumeCreated reads the order.created events of prefix's stream as a
// downstream team does: a durable pull consumer, each message acknowledged,
// repeats dropped by Nats-Msg-Id (the event id). It returns how many
// distinct order.created events each order has, once want were read.
func consumeCreated(t *testing.T, servers, prefix string, want int) map[string]int {
	t.Helper()
	nc, err := nats.Connect(strings.TrimPrefix(servers, "nats://"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cons jetstream.Consumer
	testenv.WaitFor(t, "the durable consumer", 30*time.Second, func() bool {
		cons, err = js.CreateOrUpdateConsumer(ctx, relay.StreamName(prefix), jetstream.ConsumerConfig{
			Durable: "fotest-fulfilment", AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: prefix + "." + string(flashorder.EventOrderCreated),
		})
		return err == nil
	})
	seen := map[string]bool{}
	perOrder := map[string]int{}
	// A consumer made right after a node's restart may answer nothing for
	// a while (its own group still electing a leader) or not at all (no
	// responders): an empty or failed fetch is a failure only after 30 s
	// without progress.
	progress := time.Now()
	for len(seen) < want {
		batch, err := cons.Fetch(min(100, want-len(seen)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if time.Since(progress) > 30*time.Second {
				t.Fatalf("the consumer got %d of %d events, then: %v", len(seen), want, err)
			}
			t.Logf("fetch: %v (asking again)", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ce struct{ ID, Type, Subject string }
			if err := json.Unmarshal(m.Data(), &ce); err != nil {
				t.Fatalf("message: %v", err)
			}
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != ce.ID || ce.Type != string(flashorder.EventOrderCreated) {
				t.Errorf("message Nats-Msg-Id %s: CloudEvent id %s type %s", id, ce.ID, ce.Type)
			}
			if !seen[ce.ID] {
				seen[ce.ID] = true
				perOrder[ce.Subject]++
			}
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case n > 0:
			progress = time.Now()
		case time.Since(progress) > 30*time.Second:
			t.Fatalf("the consumer got %d of %d events, then nothing for 30 s", len(seen), want)
		}
	}
	return perOrder
}

// checkCreated checks that perOrder holds exactly one order.created for
// each id in created, and none for another order.
func checkCreated(t *testing.T, perOrder map[string]int, created []string) {
	t.Helper()
	for _, id := range created {
		if perOrder[id] != 1 {
			t.Errorf("order %s (201): %d order.created events, want 1", id, perOrder[id])
		}
		delete(perOrder, id)
	}
	for id, n := range perOrder {
		t.Errorf("%d order.created events for %s, which was never answered 201", n, id)
	}
}

// placeOrders places n one-unit orders of sku concurrently and returns the
// ids answered 201 and the slowest answer.
func placeOrders(t *testing.T, c *orderhttp.Client, sku string, n int) (created []string, slowest time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			res, err := c.CreateOrder(context.Background(), order(fmt.Sprintf("%s-u%d", sku, i), item(sku, 1)), "")
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, d)
			var ce *orderhttp.ClientError
			switch {
			case err == nil:
				created = append(created, res.Order.ID)
			case errors.As(err, &ce) && ce.Code == flashorder.ESOLDOUT:
			default:
				t.Errorf("order %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	return created, slowest
}

// TestOrderdNATS runs orderd with --events nats:// on the services' 3-node
// cluster: orders placed concurrently through the API, some sold out; a
// JetStream consumer sees exactly one order.created per 201, none for the
// others.
func TestOrderdNATS(t *testing.T) {
	servers := testenv.NATSURL(t)
	prefix := natsPrefix(t, servers)
	_, c := startOrderd(t, testenv.SQLiteURL(t), "--events", servers+"/"+prefix)
	putProduct(t, c, "nats-e2e", 25, 0)
	created, _ := placeOrders(t, c, "nats-e2e", 40)
	if len(created) != 25 {
		t.Fatalf("%d orders created of 25 in stock", len(created))
	}
	testenv.WaitFor(t, "25 events published", 60*time.Second, func() bool { return metric(t, c, "flashorder_events_published_total") == 25 })
	checkCreated(t, consumeCreated(t, servers, prefix, 25), created)
}

// orderdOnPrivateNATS starts a private NATS cluster and orderd on a fresh
// SQLite database publishing to it, with enough attempts that no event
// becomes a dead letter during an outage, and puts the product sku with
// ample stock.
func orderdOnPrivateNATS(t *testing.T, sku string) (cluster *testenv.NATSCluster, prefix, dbURL string, c *orderhttp.Client) {
	t.Helper()
	cluster = testenv.PrivateNATS(t)
	prefix = natsPrefix(t, cluster.URL)
	dbURL = testenv.SQLiteURL(t)
	_, c = startOrderd(t, dbURL, "--events", cluster.URL+"/"+prefix, "--events-max-attempts", "1000")
	putProduct(t, c, sku, 100000, 0)
	return cluster, prefix, dbURL, c
}

// TestOrderdNATSDown stops the whole NATS cluster (a private one) while
// orderd takes orders: they are still accepted at once, the outbox grows (to
// more events than the relay keeps backing off at once, so that it takes the
// sink as down), and its oldest event ages, as the metric shows; when NATS is
// back the relay drains it, no dead letter, every order's order.created once
// after deduplication by event id, the publish lag observed for each.
func TestOrderdNATSDown(t *testing.T) {
	cluster, prefix, dbURL, c := orderdOnPrivateNATS(t, "nats-down")
	first, _ := placeOrders(t, c, "nats-down", 1)
	testenv.WaitFor(t, "the first event published", 60*time.Second, func() bool { return metric(t, c, "flashorder_events_published_total") == 1 })

	cluster.Stop(t)
	db, err := gormdb.Open(context.Background(), dbURL, gormdb.Options{Events: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var created []string
	var slowest time.Duration
	for _, wave := range []int{20, 130} { // 150 events: more than the relay's batch backs off at once
		ids, slow := placeOrders(t, c, "nats-down", wave)
		if len(ids) != wave {
			t.Fatalf("with NATS down: %d of %d orders created", len(ids), wave)
		}
		created, slowest = append(created, ids...), max(slowest, slow)
		rows, _, err := db.Backlog(context.Background())
		if err != nil || rows != int64(len(created)) {
			t.Fatalf("outbox backlog with NATS down: %d (%v), want %d", rows, err, len(created))
		}
	}
	t.Logf("with NATS down: %d orders, the slowest answered in %s", len(created), slowest)
	if slowest > 2*time.Second {
		t.Errorf("with NATS down an order took %s: answers wait on NATS", slowest)
	}
	// Down for a while: until the oldest pending event is 5 s old by the
	// relay's metric (what the FlashorderEventsBehind alert reads).
	testenv.WaitFor(t, "the oldest pending event 5 s old", 60*time.Second, func() bool {
		return metric(t, c, "flashorder_events_oldest_pending_seconds") >= 5
	})
	if n := metric(t, c, "flashorder_events_backlog"); n != float64(len(created)) {
		t.Errorf("flashorder_events_backlog %v, want %d", n, len(created))
	}

	start := time.Now()
	cluster.Restart(t)
	testenv.WaitFor(t, "the outbox drained", 120*time.Second, func() bool {
		rows, _, err := db.Backlog(context.Background())
		return err == nil && rows == 0
	})
	t.Logf("NATS restarted and the outbox of %d events drained in %s", len(created), time.Since(start).Round(time.Millisecond))
	if n := metric(t, c, "flashorder_events_dead_letters_total"); n != 0 {
		t.Errorf("%v dead letters", n)
	}
	published := metric(t, c, "flashorder_events_published_total")
	fams, err := testenv.Metrics(c.BaseURL)
	if err != nil {
		t.Fatal(err)
	}
	var lags uint64
	var lagSum float64
	if f := fams["flashorder_events_publish_lag_seconds"]; f != nil && len(f.GetMetric()) == 1 {
		lags, lagSum = f.GetMetric()[0].GetHistogram().GetSampleCount(), f.GetMetric()[0].GetHistogram().GetSampleSum()
	}
	if float64(lags) != published {
		t.Errorf("publish lag observed %d times, %v events published", lags, published)
	} else {
		t.Logf("publish lag, commit to ack: mean %.1f s over %d events (the outage included)", lagSum/float64(lags), lags)
	}
	checkCreated(t, consumeCreated(t, cluster.URL, prefix, 1+len(created)), append(first, created...))
}

// TestOrderdNATSNodeKilled kills (SIGKILL) the stream's leader among the 3
// NATS servers while orders are being placed through the API and their
// events published: the window is forced, the kill strikes once events
// flow, and orders go on being placed until 100 more were accepted with the
// node down. Nothing is lost: every 201 has exactly one order.created after
// deduplication by event id, none for another order; the answers never wait
// on NATS.
func TestOrderdNATSNodeKilled(t *testing.T) {
	cluster, prefix, dbURL, c := orderdOnPrivateNATS(t, "nats-kill")

	var mu sync.Mutex
	var created []string
	var slowest time.Duration
	stop := make(chan struct{})
	placed := make(chan struct{})
	go func() { // the load: waves of 20 concurrent orders until stopped
		defer close(placed)
		for wave := 0; ; wave++ {
			select {
			case <-stop:
				return
			default:
			}
			ids, slow := placeOrders(t, c, "nats-kill", 20)
			mu.Lock()
			created, slowest = append(created, ids...), max(slowest, slow)
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(created) }
	testenv.WaitFor(t, "100 events published", 60*time.Second, func() bool { return metric(t, c, "flashorder_events_published_total") >= 100 })

	nc, err := nats.Connect(strings.TrimPrefix(cluster.URL, "nats://"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), relay.StreamName(prefix))
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	victim := 0
	if _, err := fmt.Sscanf(leader, "nats-%d", &victim); err != nil || victim < 1 || victim > 3 {
		t.Fatalf("stream leader %q", leader)
	}
	at, publishedAt := count(), metric(t, c, "flashorder_events_published_total")
	cluster.Kill(t, victim)
	t.Logf("killed the stream leader %s with %d orders created, %v events published", leader, at, publishedAt)
	testenv.WaitFor(t, "100 more orders with the node down", 120*time.Second, func() bool { return count() >= at+100 })
	close(stop)
	<-placed
	testenv.WaitFor(t, "events published after the kill", 60*time.Second, func() bool {
		return metric(t, c, "flashorder_events_published_total") > publishedAt
	})

	db, err := gormdb.Open(context.Background(), dbURL, gormdb.Options{Events: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testenv.WaitFor(t, "the outbox drained", 120*time.Second, func() bool {
		rows, _, err := db.Backlog(context.Background())
		return err == nil && rows == 0
	})
	t.Logf("%d orders, %v events published, %v failed attempts while the stream changed leader; slowest answer %s",
		len(created), metric(t, c, "flashorder_events_published_total"), metric(t, c, "flashorder_events_publish_failures_total"), slowest)
	if slowest > 2*time.Second {
		t.Errorf("an order took %s: answers wait on NATS", slowest)
	}
	if n := metric(t, c, "flashorder_events_dead_letters_total"); n != 0 {
		t.Errorf("%v dead letters", n)
	}
	cluster.Restart(t)
	checkCreated(t, consumeCreated(t, cluster.URL, prefix, len(created)), created)
	if info, err := s.Info(context.Background()); err == nil {
		t.Logf("the stream holds %d messages for %d orders (JetStream's duplicate window drops republishes)", info.State.Msgs, len(created))
	}
}

// TestEventsFlagsNATS checks --events nats:// validation: no secret, a
// server list and a subject prefix.
func TestEventsFlagsNATS(t *testing.T) {
	secret := relay.SecretPrefix + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--events", "nats://127.0.0.1:4222/flashorder"}, true},
		{[]string{"--events", "nats://h1:4222,h2:4222,h3:4222/shop.orders"}, true},
		{[]string{"--events", "nats://127.0.0.1:4222"}, true},
		{[]string{"--events", "nats://127.0.0.1:4222/flashorder", "--events-secret", secret}, false},
		{[]string{"--events", "nats://127.0.0.1:4222/orders.*"}, false},
		{[]string{"--events", "nats://127.0.0.1:4222/a..b"}, false},
		{[]string{"--events", "nats://,h2:4222/x"}, false},
	} {
		m := NewMain(io.Discard)
		err := m.ParseFlags(c.args, func(string) string { return "" })
		if (err == nil) != c.ok {
			t.Errorf("%v: %v, want ok %v", c.args, err, c.ok)
		}
	}
}
