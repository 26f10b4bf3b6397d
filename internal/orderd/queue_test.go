package orderd

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/queue"
)

// admissionSecret is the tests' --admission-secret, shared by every
// instance of a test.
const admissionSecret = "test-admission-secret-of-32-bytes!!"

// placeAnswer is a queue endpoint's answer.
type placeAnswer struct {
	Ticket             string     `json:"ticket"`
	Queue              string     `json:"queue"`
	Status             string     `json:"status"`
	Position           int        `json:"position"`
	PreQueue           bool       `json:"pre_queue"`
	PollAfterMS        int64      `json:"poll_after_ms"`
	EstimatedWaitMS    *int64     `json:"estimated_wait_ms"`
	AdmissionToken     string     `json:"admission_token"`
	AdmissionExpiresAt *time.Time `json:"admission_expires_at"`
}

// join joins user to the queue of sku through base.
func join(t *testing.T, base, sku, user string) (placeAnswer, answer) {
	t.Helper()
	a := call(t, "POST", base+"/api/v1/products/"+sku+"/queue", nil, fmt.Sprintf(`{"user_id":%q}`, user))
	var p placeAnswer
	if a.status == 202 {
		if err := json.Unmarshal(a.body, &p); err != nil {
			t.Fatalf("join: %s", a.body)
		}
	}
	return p, a
}

// poll polls ticket through base.
func poll(t *testing.T, base, ticket string) placeAnswer {
	t.Helper()
	a := call(t, "GET", base+"/api/v1/queue/"+ticket, nil, "")
	var p placeAnswer
	if a.status != 200 || json.Unmarshal(a.body, &p) != nil {
		t.Fatalf("poll %s: %d %s", ticket, a.status, a.body)
	}
	return p
}

// buyWith orders one unit of sku for user through base with an admission
// token and an Idempotency-Key ("" leaves either out).
func buyWith(t *testing.T, base, user, sku, token, key string) answer {
	t.Helper()
	h := map[string]string{}
	if token != "" {
		h["Admission-Token"] = token
	}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	return call(t, "POST", base+"/api/v1/orders", h, fmt.Sprintf(`{"user_id":%q,"items":[{"sku":%q,"quantity":1}]}`, user, sku))
}

// waitStatus polls ticket through base until it reads status.
func waitStatus(t *testing.T, base, ticket, status string) placeAnswer {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := poll(t, base, ticket)
		if p.Status == status {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("ticket %s is %+v after 20s, want %s", ticket, p, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOrderdQueue runs a drop through the waiting room end to end: on
// PostgreSQL with three orderd sharing the queue on Redis, and on the
// embedded default (SQLite, the queue in memory).
func TestOrderdQueue(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		dbURL, r := redisSetup(t)
		args := []string{"--idempotency", r.URL, "--admission-secret", admissionSecret, "--admission-interval", "20ms",
			"--product-cache-ttl", "1m", "--sold-out-ttl", "1m"}
		var bases []string
		for range 3 {
			_, c := startOrderd(t, dbURL, args...)
			bases = append(bases, c.BaseURL)
		}
		testQueue(t, bases, func() string {
			_, c := startOrderd(t, dbURL, args...)
			return c.BaseURL
		})
	})
	t.Run("memory", func(t *testing.T) {
		dbURL := testenv.SQLiteURL(t)
		args := []string{"--admission-secret", admissionSecret, "--admission-interval", "20ms"}
		_, c := startOrderd(t, dbURL, args...)
		testQueue(t, []string{c.BaseURL}, nil)
	})
}

// testQueue runs the drop on the instances at bases; restart, when set,
// starts one more instance on the same database and queue store.
func testQueue(t *testing.T, bases []string, restart func() string) {
	at := func(i int) string { return bases[i%len(bases)] }
	start := time.Now().Add(1500 * time.Millisecond).UTC().Truncate(time.Millisecond)
	if a := putDrop(t, at(0), "wq-1", 3, 0, start, time.Time{}, `,"admission":"queue","admission_factor":1`); a.status != 200 ||
		!strings.Contains(string(a.body), `"admission":"queue"`) || !strings.Contains(string(a.body), `"admission_factor":1`) {
		t.Fatalf("put the queued product: %d %s", a.status, a.body)
	}
	if a := putDrop(t, at(0), "wq-open", 5, 0, time.Time{}, time.Time{}, ""); a.status != 200 {
		t.Fatalf("put an open product: %d %s", a.status, a.body)
	}

	// Before the start: everyone is in the pre-queue, in no order yet; a
	// second join (through another instance) keeps the place.
	const buyers = 6
	tickets := make([]string, buyers)
	for i := range buyers {
		p, a := join(t, at(i), "wq-1", fmt.Sprintf("wq-user-%d", i))
		if a.status != 202 || p.Status != "waiting" || !p.PreQueue || p.Position != 0 || p.Queue != "sku:wq-1" ||
			p.PollAfterMS <= 0 || p.EstimatedWaitMS == nil {
			t.Fatalf("join before the start: %d %s", a.status, a.body)
		}
		tickets[i] = p.Ticket
	}
	if p, _ := join(t, at(1), "wq-1", "wq-user-0"); p.Ticket != tickets[0] {
		t.Fatalf("a second join got ticket %q, want the first %q", p.Ticket, tickets[0])
	}

	// Refusals that change nothing: orders without a token, with a forged
	// one, one signed alg none; joins of an open product, an unknown one,
	// a bad user; polls of tickets that are not ones.
	forged := forgeToken(t, "wq-user-0", "sku:wq-1", tickets[0])
	for name, token := range map[string]string{"none": "", "garbage": "abc.def.ghi", "forged": forged, "alg none": algNone("wq-user-0", "sku:wq-1", tickets[0])} {
		if a := buyWith(t, at(0), "wq-user-0", "wq-1", token, ""); a.status != 403 || a.code() != "admission_required" {
			t.Fatalf("order with token %s: %d %s", name, a.status, a.body)
		}
	}
	if _, a := join(t, at(0), "wq-open", "wq-user-0"); a.status != 409 || a.code() != "invalid_state" {
		t.Fatalf("join an open product: %d %s", a.status, a.body)
	}
	if _, a := join(t, at(0), "wq-nope", "wq-user-0"); a.status != 404 {
		t.Fatalf("join an unknown product: %d %s", a.status, a.body)
	}
	if _, a := join(t, at(0), "wq-1", "bad user"); a.status != 400 || a.code() != "invalid_request" {
		t.Fatalf("join as a bad user id: %d %s", a.status, a.body)
	}
	for _, tk := range []string{"nope", "sku:wq-1~" + strings.Repeat("0", 32), "sku:wq-1~zz", tickets[0] + "0"} {
		if a := call(t, "GET", at(0)+"/api/v1/queue/"+tk, nil, ""); a.status != 404 || a.code() != "not_found" {
			t.Fatalf("poll %q: %d %s", tk, a.status, a.body)
		}
	}
	if a := buy(t, at(0), "wq-user-0", "wq-open"); a.status != 201 {
		t.Fatalf("an open product takes orders without a token: %d %s", a.status, a.body)
	}

	// After the start: stock 3, factor 1: three admitted, three waiting at
	// positions 1..3.
	time.Sleep(time.Until(start))
	var admitted, waiting []int
	tokens := map[int]string{}
	testenv.WaitFor(t, "three admissions", 20*time.Second, func() bool {
		admitted, waiting = nil, nil
		for i, tk := range tickets {
			switch p := poll(t, at(i), tk); p.Status {
			case "admitted":
				admitted = append(admitted, i)
				tokens[i] = p.AdmissionToken
			case "waiting":
				waiting = append(waiting, i)
			}
		}
		return len(admitted) == 3
	})
	if len(waiting) != 3 {
		t.Fatalf("after the start: admitted %v, waiting %v", admitted, waiting)
	}
	positions := map[int]bool{}
	firstInLine := -1
	for _, i := range waiting {
		p := poll(t, at(i), tickets[i])
		positions[p.Position] = true
		if p.Position == 1 {
			firstInLine = i
		}
	}
	if !positions[1] || !positions[2] || !positions[3] {
		t.Fatalf("waiting positions %v, want 1, 2 and 3", positions)
	}

	// Other users' and other queues' tokens are refused.
	a0, a1, a2 := admitted[0], admitted[1], admitted[2]
	user := func(i int) string { return fmt.Sprintf("wq-user-%d", i) }
	if a := buyWith(t, at(0), user(a1), "wq-1", tokens[a0], ""); a.status != 403 || a.code() != "admission_required" {
		t.Fatalf("another user's token: %d %s", a.status, a.body)
	}
	if a := putDrop(t, at(0), "wq-2", 3, 0, time.Time{}, time.Time{}, `,"admission":"queue"`); a.status != 200 {
		t.Fatalf("put a second queued product: %d %s", a.status, a.body)
	}
	if a := buyWith(t, at(0), user(a0), "wq-2", tokens[a0], ""); a.status != 403 || a.code() != "admission_required" {
		t.Fatalf("another product's token: %d %s", a.status, a.body)
	}

	// The token orders once: a retry under the same Idempotency-Key
	// replays the order (through any instance); any other use is refused.
	first := buyWith(t, at(0), user(a0), "wq-1", tokens[a0], "wq-key-1")
	id := orderID(t, first)
	if r := buyWith(t, at(1), user(a0), "wq-1", tokens[a0], "wq-key-1"); r.status != 201 || orderID(t, r) != id ||
		r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the same key again: %d %s", r.status, r.body)
	}
	for name, key := range map[string]string{"no key": "", "another key": "wq-key-2"} {
		if r := buyWith(t, at(2), user(a0), "wq-1", tokens[a0], key); r.status != 409 || r.code() != "admission_used" {
			t.Fatalf("the token again with %s: %d %s", name, r.status, r.body)
		}
	}
	orderID(t, buyWith(t, at(1), user(a1), "wq-1", tokens[a1], ""))
	orderID(t, buyWith(t, at(2), user(a2), "wq-1", tokens[a2], ""))

	// Sold out: every waiting ticket hears it.
	for _, i := range waiting {
		waitStatus(t, at(i), tickets[i], "sold_out")
	}
	if p := poll(t, at(0), tickets[a0]); p.Status != "admitted" || p.AdmissionToken != "" {
		t.Fatalf("a used admission's ticket shows no token: %+v", p)
	}

	// Stock comes back (a cancel): admission resumes for the first in line.
	if a := call(t, "POST", at(0)+"/api/v1/orders/"+id+"/cancel", nil, fmt.Sprintf(`{"user_id":%q}`, user(a0))); a.status != 200 {
		t.Fatalf("cancel: %d %s", a.status, a.body)
	}
	var next int = -1
	testenv.WaitFor(t, "an admission after the cancel", 20*time.Second, func() bool {
		for _, i := range waiting {
			if p := poll(t, at(i), tickets[i]); p.Status == "admitted" {
				next, tokens[i] = i, p.AdmissionToken
				return true
			}
		}
		return false
	})
	if next != firstInLine {
		t.Fatalf("admitted buyer %d, not the first in line, %d", next, firstInLine)
	}
	orderID(t, buyWith(t, at(0), user(next), "wq-1", tokens[next], ""))

	// A used token stays used for a new instance (after a restart).
	if restart != nil {
		base := restart()
		if r := buyWith(t, base, user(a1), "wq-1", tokens[a1], ""); r.status != 409 || r.code() != "admission_used" {
			t.Fatalf("a used token on a new instance: %d %s", r.status, r.body)
		}
	}

	if n, _, _ := testenv.MetricSum(at(0), "flashorder_queue_bound_exceeded_total"); n != 0 {
		t.Fatalf("the admission bound was exceeded in %v rounds", n)
	}
	if n, ok, _ := testenv.MetricSum(at(0), "flashorder_queue_admitted_total"); !ok {
		t.Fatalf("no admission metrics (%v)", n)
	}
	for _, base := range bases {
		a := call(t, "GET", base+"/api/v1/admin/audit", map[string]string{"Authorization": "Bearer " + adminToken}, "")
		if a.status != 200 || !strings.Contains(string(a.body), `"ok":true`) {
			t.Fatalf("audit: %d %s", a.status, a.body)
		}
	}
}

// TestOrderdQueueSale runs a sale of two products through one waiting room:
// a token of the sale orders either product, once; the bound counts the
// sale's whole stock; concurrent joins of one user keep one place.
func TestOrderdQueueSale(t *testing.T) {
	dbURL := testenv.SQLiteURL(t)
	_, c := startOrderd(t, dbURL, "--admission-secret", admissionSecret, "--admission-interval", "20ms", "--admission-ttl", "1s")
	base := c.BaseURL
	for _, sku := range []string{"size-40", "size-41"} {
		if a := putDrop(t, base, sku, 1, 0, time.Time{}, time.Time{}, `,"admission":"queue","sale":"sneaker","admission_factor":1`); a.status != 200 {
			t.Fatalf("put %s: %d %s", sku, a.status, a.body)
		}
	}
	// One user joining 20 times at once, through both products: one place.
	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sku := []string{"size-40", "size-41"}[i%2]
			p, a := join(t, base, sku, "fan-0")
			if a.status != 202 || p.Queue != "sale:sneaker" {
				t.Errorf("join %s: %d %s", sku, a.status, a.body)
			}
			got[i] = p.Ticket
		}()
	}
	wg.Wait()
	for _, tk := range got {
		if tk != got[0] {
			t.Fatalf("concurrent joins of one user: tickets %v", got)
		}
	}
	tickets := []string{got[0]}
	for i := 1; i < 4; i++ {
		p, _ := join(t, base, "size-41", fmt.Sprintf("fan-%d", i))
		tickets = append(tickets, p.Ticket)
	}
	// Two units in the sale, factor 1: two admitted.
	p0 := waitStatus(t, base, tickets[0], "admitted")
	p1 := waitStatus(t, base, tickets[1], "admitted")
	if p := poll(t, base, tickets[2]); p.Status != "waiting" || p.Position != 1 {
		t.Fatalf("third in line: %+v", p)
	}
	// The sale's token is good for either product.
	orderID(t, buyWith(t, base, "fan-0", "size-41", p0.AdmissionToken, ""))
	// The second admitted buyer lets the admission lapse: the place goes
	// to the next, and the lapsed token is refused.
	p2 := waitStatus(t, base, tickets[2], "admitted")
	if a := buyWith(t, base, "fan-1", "size-40", p1.AdmissionToken, ""); a.status != 403 || a.code() != "admission_required" {
		t.Fatalf("an expired token: %d %s", a.status, a.body)
	}
	if p := poll(t, base, tickets[1]); p.Status != "expired" {
		t.Fatalf("a lapsed admission's ticket: %+v", p)
	}
	orderID(t, buyWith(t, base, "fan-2", "size-40", p2.AdmissionToken, ""))
	waitStatus(t, base, tickets[3], "sold_out")
}

// forgeToken returns an admission token of the right shape signed with a
// key that is not the server's.
func forgeToken(t *testing.T, user, queueID, ticket string) string {
	t.Helper()
	s, err := queue.NewSigner([]byte("a-different-secret-of-32-bytes!!!!"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(queue.Admission{TicketID: ticket, QueueID: queueID, UserID: user, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// algNone returns an unsigned token (alg none) with an admission's claims.
func algNone(user, queueID, ticket string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims := fmt.Sprintf(`{"q":%q,"tid":%q,"sub":%q,"exp":%d}`, queueID, ticket, user, time.Now().Add(time.Hour).Unix())
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "."
}

// TestOrderdBots checks the bot defences through orderd: the per-IP limit
// on joins and orders (X-Forwarded-For believed only from
// --trusted-proxies), 10,000 joins from one address, and the challenge on
// joins against a fake siteverify server. Each refusal changes nothing.
func TestOrderdBots(t *testing.T) {
	var verifies sync.Map // token -> calls
	verifier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("secret") != "challenge-secret" {
			http.Error(w, "bad form", 400)
			return
		}
		tok := r.PostForm.Get("response")
		n, _ := verifies.LoadOrStore(tok, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		switch tok {
		case "down":
			http.Error(w, "down", 500)
		default:
			fmt.Fprintf(w, `{"success":%v,"error-codes":[]}`, tok == "solved")
		}
	}))
	t.Cleanup(verifier.Close)
	dbURL := testenv.SQLiteURL(t)
	_, behind := startOrderd(t, dbURL, "--admission-secret", admissionSecret, "--ip-rate-limit", "5/h",
		"--trusted-proxies", "127.0.0.1/32", "--challenge-verify-url", verifier.URL, "--challenge-secret", "challenge-secret")
	_, direct := startOrderd(t, testenv.SQLiteURL(t), "--admission-secret", admissionSecret, "--ip-rate-limit", "5/h")
	for _, base := range []string{behind.BaseURL, direct.BaseURL} {
		if a := putDrop(t, base, "bot-1", 10, 0, time.Time{}, time.Time{}, `,"admission":"queue"`); a.status != 200 {
			t.Fatalf("put: %d %s", a.status, a.body)
		}
	}
	joinFrom := func(base, xff, user, challenge string) answer {
		h := map[string]string{"X-Forwarded-For": xff}
		if challenge != "" {
			h["Challenge-Token"] = challenge
		}
		return call(t, "POST", base+"/api/v1/products/bot-1/queue", h, fmt.Sprintf(`{"user_id":%q}`, user))
	}

	// The challenge: missing or unsolved 403, the verifier down 503; none
	// counts as a join.
	for tok, want := range map[string]int{"": 403, "wrong": 403, "down": 503} {
		a := joinFrom(behind.BaseURL, "198.51.100.1", "c-user", tok)
		if a.status != want || (want == 403 && a.code() != "challenge_failed") || (want == 503 && a.header.Get("Retry-After") == "") {
			t.Fatalf("challenge %q: %d %s", tok, a.status, a.body)
		}
	}
	// Behind the trusted proxy each forwarded address has its budget: 5
	// joins (the refused ones above spent 3 of 198.51.100.1's).
	for i := range 5 {
		if a := joinFrom(behind.BaseURL, "10.9.9.9, 203.0.113.7", fmt.Sprintf("bot-a-%d", i), "solved"); a.status != 202 {
			t.Fatalf("join %d from 203.0.113.7: %d %s", i, a.status, a.body)
		}
	}
	a := joinFrom(behind.BaseURL, "203.0.113.7", "bot-a-5", "solved")
	if a.status != 429 || a.code() != "rate_limited" || a.header.Get("Retry-After") == "" {
		t.Fatalf("6th join from one address: %d %s", a.status, a.body)
	}
	if a := joinFrom(behind.BaseURL, "203.0.113.8", "bot-b-0", "solved"); a.status != 202 {
		t.Fatalf("another address: %d %s", a.status, a.body)
	}
	// Orders share the budget of their address.
	for i := range 5 {
		buyFrom := call(t, "POST", behind.BaseURL+"/api/v1/orders", map[string]string{"X-Forwarded-For": "203.0.113.9"},
			fmt.Sprintf(`{"user_id":"o-%d","items":[{"sku":"bot-1","quantity":1}]}`, i))
		if buyFrom.status != 403 {
			t.Fatalf("order %d without a token: %d %s", i, buyFrom.status, buyFrom.body)
		}
	}
	if a := call(t, "POST", behind.BaseURL+"/api/v1/orders", map[string]string{"X-Forwarded-For": "203.0.113.9"},
		`{"user_id":"o-9","items":[{"sku":"bot-1","quantity":1}]}`); a.status != 429 {
		t.Fatalf("6th order from one address: %d %s", a.status, a.body)
	}

	// Without trusted proxies X-Forwarded-For is the client's invention:
	// rotating it buys nothing. 10,000 joins from one address, 5 pass.
	var wg sync.WaitGroup
	var codes [600]atomic.Int64
	var joined sync.Map // user -> ticket
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 10000; i += 50 {
				user := fmt.Sprintf("flood-%d", i)
				a := joinFrom(direct.BaseURL, fmt.Sprintf("192.0.2.%d", i%250), user, "")
				codes[a.status].Add(1)
				var p placeAnswer
				if a.status == 202 && json.Unmarshal(a.body, &p) == nil {
					joined.Store(user, p.Ticket)
				}
			}
		}()
	}
	wg.Wait()
	if codes[202].Load() != 5 || codes[429].Load() != 9995 {
		t.Fatalf("10,000 joins from one address: %d joined, %d refused 429", codes[202].Load(), codes[429].Load())
	}
	// The 5 that passed are the queue's only joiners: stock 10 admits
	// them all, and nobody else.
	testenv.WaitFor(t, "the queue's admissions", 10*time.Second, func() bool {
		n, _, _ := testenv.MetricSum(direct.BaseURL, "flashorder_queue_admitted_total")
		return n == 5
	})
	if n, _, _ := testenv.MetricSum(direct.BaseURL, "flashorder_queue_waiting"); n != 0 {
		t.Fatalf("%v tickets still waiting", n)
	}
	// The address's budget is spent, but an admission is a limit of its
	// own: each admitted ticket orders once. A token that admits to
	// nothing (not genuine: 403 first; or on an order of an open product,
	// which needs none) leaves the order to the address's budget: 429.
	if a := putDrop(t, direct.BaseURL, "open-1", 10, 0, time.Time{}, time.Time{}, ""); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	var tokens []string
	joined.Range(func(user, ticket any) bool {
		p := waitStatus(t, direct.BaseURL, ticket.(string), "admitted")
		if a := buyWith(t, direct.BaseURL, user.(string), "bot-1", p.AdmissionToken, ""); a.status != 201 {
			t.Fatalf("admitted order from a spent address: %d %s", a.status, a.body)
		}
		tokens = append(tokens, p.AdmissionToken)
		return true
	})
	if a := buyWith(t, direct.BaseURL, "flood-x", "bot-1", forgeToken(t, "flood-x", "sku:bot-1", "sku:bot-1~"+strings.Repeat("ab", 16)), ""); a.status != 403 || a.code() != "admission_required" {
		t.Fatalf("forged token from a spent address: %d %s", a.status, a.body)
	}
	if a := buyWith(t, direct.BaseURL, "flood-y", "open-1", tokens[0], ""); a.status != 429 || a.code() != "rate_limited" {
		t.Fatalf("an open product's order with a token from a spent address: %d %s", a.status, a.body)
	}
	if len(tokens) != 5 {
		t.Fatalf("%d admitted orders, want 5", len(tokens))
	}
	testenv.WaitFor(t, "the 5 admissions used", 10*time.Second, func() bool {
		n, _, _ := testenv.MetricSum(direct.BaseURL, "flashorder_queue_admissions_used")
		return n == 5
	})
}

// TestOrderdQueueRedisDown stops the queue's Redis mid-sale: joins and
// polls answer 503 with Retry-After, an admitted buyer's token still orders
// (once), nobody orders without one, nothing is oversold, and the room works
// again once Redis is back.
func TestOrderdQueueRedisDown(t *testing.T) {
	dbURL, r := redisSetup(t)
	_, c := startOrderd(t, dbURL, "--idempotency", r.URL, "--admission-secret", admissionSecret, "--admission-interval", "20ms")
	base := c.BaseURL
	if a := putDrop(t, base, "rd-1", 2, 0, time.Time{}, time.Time{}, `,"admission":"queue","admission_factor":1`); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	var tickets []string
	for i := range 3 {
		p, a := join(t, base, "rd-1", fmt.Sprintf("rd-user-%d", i))
		if a.status != 202 {
			t.Fatalf("join: %d %s", a.status, a.body)
		}
		tickets = append(tickets, p.Ticket)
	}
	p0 := waitStatus(t, base, tickets[0], "admitted")
	waitStatus(t, base, tickets[1], "admitted")

	r.Stop(t)
	for _, a := range []answer{
		call(t, "POST", base+"/api/v1/products/rd-1/queue", nil, `{"user_id":"rd-late"}`),
		call(t, "GET", base+"/api/v1/queue/"+tickets[2], nil, ""),
	} {
		if a.status != 503 || a.code() != "unavailable" || a.header.Get("Retry-After") == "" {
			t.Fatalf("the room with Redis down: %d %s", a.status, a.body)
		}
	}
	orderID(t, buyWith(t, base, "rd-user-0", "rd-1", p0.AdmissionToken, ""))
	if a := buyWith(t, base, "rd-user-0", "rd-1", p0.AdmissionToken, ""); a.status != 409 || a.code() != "admission_used" {
		t.Fatalf("the token again with Redis down: %d %s", a.status, a.body)
	}
	if a := buy(t, base, "rd-user-2", "rd-1"); a.status != 403 || a.code() != "admission_required" {
		t.Fatalf("an order without a token with Redis down: %d %s", a.status, a.body)
	}

	r.Restart(t)
	testenv.WaitFor(t, "joins after Redis is back", 20*time.Second, func() bool {
		_, a := join(t, base, "rd-1", "rd-late")
		return a.status == 202
	})
	if line := auditLine(t, c, "rd-1"); !line.OK || line.Sold != 1 {
		t.Fatalf("audit after the outage: %+v", line)
	}
}

// TestOrderdQueueCrowd runs a crowd through the waiting room of three orderd
// sharing Redis: 150 buyers join at once through any instance, poll, and
// order once admitted (some twice with the same token, some with another
// buyer's). Stock sells exactly, no token orders twice, every waiting buyer
// ends told sold_out, and no instance saw the admission bound exceeded.
func TestOrderdQueueCrowd(t *testing.T) {
	dbURL, r := redisSetup(t)
	args := []string{"--idempotency", r.URL, "--admission-secret", admissionSecret, "--admission-interval", "20ms",
		"--product-cache-ttl", "1m", "--sold-out-ttl", "1m"}
	var bases []string
	for range 3 {
		_, c := startOrderd(t, dbURL, args...)
		bases = append(bases, c.BaseURL)
	}
	const buyers, stock = 150, 40
	if a := putDrop(t, bases[0], "crowd-1", stock, 1, time.Time{}, time.Time{}, `,"admission":"queue","admission_factor":1.5`); a.status != 200 {
		t.Fatalf("put: %d %s", a.status, a.body)
	}
	var (
		mu      sync.Mutex
		created = map[string]string{} // token -> order id
		tokens  []string
		soldOut int
		wg      sync.WaitGroup
	)
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := bases[i%3]
			user := fmt.Sprintf("crowd-%d", i)
			p, a := join(t, base, "crowd-1", user)
			if a.status != 202 {
				t.Errorf("join: %d %s", a.status, a.body)
				return
			}
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				p = poll(t, bases[(i+1)%3], p.Ticket)
				switch p.Status {
				case "sold_out":
					mu.Lock()
					soldOut++
					mu.Unlock()
					return
				case "admitted":
					if p.AdmissionToken == "" {
						return // used: nothing more to do
					}
					o := buyWith(t, bases[(i+2)%3], user, "crowd-1", p.AdmissionToken, "")
					mu.Lock()
					tokens = append(tokens, p.AdmissionToken)
					if o.status == 201 {
						if prev, ok := created[p.AdmissionToken]; ok {
							t.Errorf("token ordered twice: %s and %s", prev, orderID(t, o))
						}
						created[p.AdmissionToken] = orderID(t, o)
					} else if o.code() != "sold_out" {
						t.Errorf("order with a fresh token: %d %s", o.status, o.body)
					}
					mu.Unlock()
					// The same token again, through another instance: refused.
					if again := buyWith(t, bases[i%3], user, "crowd-1", p.AdmissionToken, ""); again.status != 409 ||
						(again.code() != "admission_used" && again.code() != "sold_out") {
						t.Errorf("the token again: %d %s", again.status, again.body)
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("buyer %d still %s after 60s", i, p.Status)
		}()
	}
	wg.Wait()
	if len(created) != stock {
		t.Fatalf("%d orders made, want the stock %d (%d tokens used, %d told sold out)", len(created), stock, len(tokens), soldOut)
	}
	if len(created)+soldOut > buyers || soldOut == 0 {
		t.Fatalf("%d orders and %d told sold out of %d buyers", len(created), soldOut, buyers)
	}
	for _, base := range bases {
		if n, _, _ := testenv.MetricSum(base, "flashorder_queue_bound_exceeded_total"); n != 0 {
			t.Fatalf("%s saw the admission bound exceeded in %v rounds", base, n)
		}
		a := call(t, "GET", base+"/api/v1/admin/audit", map[string]string{"Authorization": "Bearer " + adminToken}, "")
		if a.status != 200 || !strings.Contains(string(a.body), `"ok":true`) {
			t.Fatalf("audit: %d %s", a.status, a.body)
		}
	}
}

// TestOrderdQueuePreQueueFromMemory polls pre-queue tickets through three
// orderd on one Redis (one of which saw no join), an hour before the start,
// with --queue-idle 2s: the polls are answered from memory
// (flashorder_queue_polls_from_memory_total grows on each), the answers are the pre-queue's, and a ticket polled only
// from memory for three idle timeouts keeps its place (the store, asked
// directly through the other instance after a pause, still has it waiting),
// while one left unpolled lapses.
func TestOrderdQueuePreQueueFromMemory(t *testing.T) {
	dbURL, r := redisSetup(t)
	args := []string{"--idempotency", r.URL, "--admission-secret", admissionSecret, "--admission-interval", "20ms", "--queue-idle", "2s"}
	_, a := startOrderd(t, dbURL, args...)
	_, b := startOrderd(t, dbURL, args...)
	_, c := startOrderd(t, dbURL, args...) // sees no join: polls alone make it serve the queue
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if p := putDrop(t, a.BaseURL, "mem-1", 10, 0, start, time.Time{}, `,"admission":"queue"`); p.status != 200 {
		t.Fatalf("put: %d %s", p.status, p.body)
	}
	kept, ja := join(t, a.BaseURL, "mem-1", "mem-kept")
	lapsed, jb := join(t, b.BaseURL, "mem-1", "mem-lapsed")
	if ja.status != 202 || jb.status != 202 {
		t.Fatalf("joins: %d %s, %d %s", ja.status, ja.body, jb.status, jb.body)
	}
	poll(t, a.BaseURL, kept.Ticket) // b remembers kept at its first poll there
	poll(t, b.BaseURL, kept.Ticket)
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		for _, base := range []string{a.BaseURL, b.BaseURL, c.BaseURL} {
			if p := poll(t, base, kept.Ticket); p.Status != "waiting" || !p.PreQueue || p.Position != 0 || p.Ticket != kept.Ticket {
				t.Fatalf("pre-queue poll through %s: %+v", base, p)
			}
		}
	}
	for _, base := range []string{a.BaseURL, b.BaseURL, c.BaseURL} {
		if n, _, _ := testenv.MetricSum(base, "flashorder_queue_polls_from_memory_total"); n < 10 {
			t.Fatalf("%s answered %v polls from memory, want most of its 30", base, n)
		}
	}
	// A poll that has to go to the store: lapsed was never polled, so
	// neither instance answers it from memory, and the store let it go.
	if p := poll(t, a.BaseURL, lapsed.Ticket); p.Status != "expired" {
		t.Fatalf("a ticket unpolled for 6 s (idle 2 s): %+v", p)
	}
	// kept's place is alive in the store: after 1.5 s without a poll
	// (more than half the idle timeout, so the instances ask the store),
	// it still reads waiting.
	time.Sleep(1500 * time.Millisecond)
	if p := poll(t, b.BaseURL, kept.Ticket); p.Status != "waiting" || !p.PreQueue {
		t.Fatalf("a ticket polled only from memory for 6 s: %+v", p)
	}
}
