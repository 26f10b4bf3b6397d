package queue_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/queue"
)

func TestTicketID(t *testing.T) {
	q := queue.ProductQueue("hot-1")
	id := queue.NewTicketID(q)
	if got, err := queue.ParseTicketID(id); err != nil || got != q {
		t.Fatalf("ParseTicketID(%q) = %q, %v", id, got, err)
	}
	if other := queue.NewTicketID(q); other == id {
		t.Fatal("two tickets, one id")
	}
	rnd := id[len(q):] // "~" and the random part
	for _, bad := range []string{"", "~", q, q + "~", rnd, id + "0", id[:len(id)-1], strings.ToUpper(id),
		"hot-1" + rnd, "sku:hot 1" + rnd, "pre:hot-1" + rnd, q + "~" + rnd, id[:len(id)-1] + "g"} {
		if _, err := queue.ParseTicketID(bad); !errors.Is(err, queue.ErrMalformedTicket) {
			t.Errorf("ParseTicketID(%q): %v, want ErrMalformedTicket", bad, err)
		}
	}
}

func TestAdmitLimit(t *testing.T) {
	for _, c := range []struct {
		stock  int
		factor float64
		want   int
	}{{0, 1.5, 0}, {-3, 1.5, 0}, {10, 0, 0}, {10, -1, 0}, {10, 1, 10}, {10, 1.5, 15}, {3, 1.5, 4}, {1, 1.5, 1}} {
		if got := queue.AdmitLimit(c.stock, c.factor); got != c.want {
			t.Errorf("AdmitLimit(%d, %v) = %d, want %d", c.stock, c.factor, got, c.want)
		}
	}
}

func TestPreQueueKey(t *testing.T) {
	seen := map[float64]bool{}
	for range 1000 {
		k := queue.PreQueueKey()
		if k < 0 || k >= 1 || seen[k] {
			t.Fatalf("key %v out of [0, 1) or repeated", k)
		}
		seen[k] = true
	}
}

func TestValidateIDs(t *testing.T) {
	for _, q := range []string{queue.SaleQueue("drop-7"), queue.ProductQueue("hot-1")} {
		if err := queue.ValidateIDs(q, "u-42"); err != nil {
			t.Fatal(err)
		}
	}
	ok := queue.ProductQueue("q")
	for _, c := range [][2]string{{"", "u"}, {"hot-1", "u"}, {"sku:", "u"}, {"sale:", "u"}, {"sku:a~b", "u"}, {"sale:a{b}", "u"},
		{"sku:sku:a", "u"}, {ok, ""}, {ok, "a b"}, {queue.ProductQueue(strings.Repeat("q", 65)), "u"}} {
		if err := queue.ValidateIDs(c[0], c[1]); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("ValidateIDs(%q, %q): %v", c[0], c[1], err)
		}
	}
}
