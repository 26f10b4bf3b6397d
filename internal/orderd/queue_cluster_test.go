package orderd

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/redis"
)

// TestOrderdQueueCluster runs a short drop through the waiting room of two
// orderd whose --queue-store is the services' 3-master Redis Cluster
// (redis+cluster://): buyers join through either instance, are admitted,
// order with their token once (the token again, through the other
// instance, is admission_used), and the last in line hears sold_out. The
// cluster is shared by every run, so the product's SKU (and so its queue)
// is this run's own.
func TestOrderdQueueCluster(t *testing.T) {
	clusterURL := testenv.RedisClusterURL(t)
	dbURL := testenv.PostgresURL(t)
	args := []string{"--queue-store", clusterURL, "--admission-secret", admissionSecret, "--admission-interval", "20ms"}
	var bases []string
	var first *orderhttp.Client
	for range 2 {
		m, c := startOrderd(t, dbURL, args...)
		if _, ok := m.queueClient.(*goredis.ClusterClient); !ok {
			t.Fatalf("--queue-store %s: the room's client is %T, want a cluster client", clusterURL, m.queueClient)
		}
		bases = append(bases, c.BaseURL)
		if first == nil {
			first = c
		}
	}
	at := func(i int) string { return bases[i%len(bases)] }
	sku := testenv.Unique("cq")
	start := time.Now().Add(time.Second).UTC().Truncate(time.Millisecond)
	if a := putDrop(t, at(0), sku, 2, 0, start, time.Time{}, `,"admission":"queue","admission_factor":1`); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}

	// Before the start: three buyers in the pre-queue, through both
	// instances; a second join through the other keeps the place.
	const buyers = 3
	user := func(i int) string { return fmt.Sprintf("cq-user-%d", i) }
	tickets := make([]string, buyers)
	for i := range buyers {
		p, a := join(t, at(i), sku, user(i))
		if a.status != 202 || p.Status != "waiting" || !p.PreQueue || p.Queue != queue.ProductQueue(sku) {
			t.Fatalf("join before the start: %d %s", a.status, a.body)
		}
		tickets[i] = p.Ticket
	}
	if p, _ := join(t, at(1), sku, user(0)); p.Ticket != tickets[0] {
		t.Fatalf("a second join got ticket %q, want the first %q", p.Ticket, tickets[0])
	}
	// The queue lives in the cluster, under its hash tag.
	c, err := redis.OpenUniversalClient(clusterURL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	meta := redis.NewQueueStore(nil, queue.Options{}).QueueKeys(queue.ProductQueue(sku))[0]
	if n, err := c.Exists(context.Background(), meta).Result(); err != nil || n != 1 {
		t.Fatalf("the queue's key %s in the cluster: %d, %v", meta, n, err)
	}

	// After the start: stock 2, factor 1: two admitted (seen through the
	// instance the buyer did not join on), one waiting.
	time.Sleep(time.Until(start))
	tokens := map[int]string{}
	waiting := -1
	testenv.WaitFor(t, "two admissions", 20*time.Second, func() bool {
		waiting = -1
		for i, tk := range tickets {
			switch p := poll(t, at(i+1), tk); p.Status {
			case "admitted":
				tokens[i] = p.AdmissionToken
			case "waiting":
				waiting = i
			}
		}
		return len(tokens) == 2
	})
	if waiting < 0 {
		t.Fatalf("after the start: admitted %v, nobody waiting", tokens)
	}

	// Each token orders once; the same token through the other instance
	// is admission_used.
	for i, tok := range tokens {
		orderID(t, buyWith(t, at(i), user(i), sku, tok, ""))
		if a := buyWith(t, at(i+1), user(i), sku, tok, ""); a.status != 409 || a.code() != "admission_used" {
			t.Fatalf("the token of %s again: %d %s", user(i), a.status, a.body)
		}
	}
	if a := buyWith(t, at(0), user(waiting), sku, "", ""); a.status != 403 || a.code() != "admission_required" {
		t.Fatalf("an order without a token: %d %s", a.status, a.body)
	}
	waitStatus(t, at(waiting), tickets[waiting], "sold_out")
	for _, base := range bases {
		if n, _, _ := testenv.MetricSum(base, "flashorder_queue_bound_exceeded_total"); n != 0 {
			t.Fatalf("%s saw the admission bound exceeded in %v rounds", base, n)
		}
	}
	if line := auditLine(t, first, sku); !line.OK || line.Sold != 2 {
		t.Fatalf("audit: %+v, want ok and 2 sold", line)
	}
}
