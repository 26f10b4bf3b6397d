package queue_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/queue"
)

func TestTicketID(t *testing.T) {
	id := queue.NewTicketID("hot-1")
	if q, err := queue.ParseTicketID(id); err != nil || q != "hot-1" {
		t.Fatalf("ParseTicketID(%q) = %q, %v", id, q, err)
	}
	if other := queue.NewTicketID("hot-1"); other == id {
		t.Fatal("two tickets, one id")
	}
	for _, bad := range []string{"", "~", "hot-1", "hot-1~", "~" + id[6:], id + "0", id[:len(id)-1],
		strings.ToUpper(id), "hot 1" + id[5:], "hot-1~~" + id[7:], id[:len(id)-1] + "g"} {
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
	if err := queue.ValidateIDs("drop-7", "u-42"); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{"", "u"}, {"a~b", "u"}, {"a{b}", "u"}, {"q", ""}, {"q", "a b"}, {strings.Repeat("q", 65), "u"}} {
		if err := queue.ValidateIDs(c[0], c[1]); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("ValidateIDs(%q, %q): %v", c[0], c[1], err)
		}
	}
}
