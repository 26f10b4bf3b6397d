package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

// jsonContentType is shared by every request: net/http only reads headers.
var jsonContentType = []string{"application/json"}

// Transport error codes, used as Answer.Code with Status 0.
const (
	CodeTimeout   = "timeout"
	CodeTransport = "transport_error"
)

// worker is one client. All of its state is its own; it touches shared state
// only through its stats shard and atomics.
type worker struct {
	r     *runner
	id    int
	rng   *rand.Rand
	zipf  *rand.Zipf
	shard *shard
	seq   int64
	url   int
	buf   bytes.Buffer
	body  []byte
	state workerState

	last       *request // the previous request, for retries
	lastStatus int
	lastID     string
}

// request is one order request with its pre-encoded body.
type request struct {
	user  string
	items []flashorder.ItemRequest
	key   string
	body  []byte
	retry bool
}

func newWorker(r *runner, id int) *worker {
	w := &worker{
		r:     r,
		id:    id,
		rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id))),
		shard: r.shards[id%len(r.shards)],
		url:   id % len(r.orderURLs),
		state: workerState{uncertain: map[string]int64{}},
	}
	if s := r.cfg.Scenario; s.Zipf > 1 && s.SKUs > 1 {
		w.zipf = rand.NewZipf(w.rng, s.Zipf, 1, uint64(s.SKUs-1))
	}
	return w
}

func (w *worker) closedLoop(ctx context.Context) {
	think := w.r.cfg.Think
	for {
		now := time.Now()
		if w.r.stopped(ctx, now) {
			return
		}
		if w.r.cfg.Requests > 0 && !now.Before(w.r.measureStart) && w.r.claimed.Add(1) > w.r.cfg.Requests {
			return
		}
		w.send(ctx, now, now, false)
		if think > 0 {
			t := time.NewTimer(think)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

func (w *worker) openLoop(ctx context.Context, sched Schedule, tokens <-chan int64) {
	for i := range tokens {
		if ctx.Err() != nil {
			continue
		}
		w.send(ctx, sched.Intended(i), time.Now(), true)
	}
}

// sku picks one SKU index.
func (w *worker) sku() int {
	n := w.r.cfg.Scenario.SKUs
	switch {
	case n == 1:
		return 0
	case w.zipf != nil:
		return int(w.zipf.Uint64())
	default:
		return w.rng.IntN(n)
	}
}

// next builds the next request: a retry of the previous one, or a new one.
func (w *worker) next() *request {
	sc := &w.r.cfg.Scenario
	if w.last != nil && sc.RetryShare > 0 && w.rng.Float64() < sc.RetryShare {
		rq := *w.last
		rq.retry = true
		return &rq
	}
	w.seq++
	rq := &request{}
	if len(w.r.users) > 0 {
		rq.user = w.r.users[w.rng.IntN(len(w.r.users))]
	} else {
		rq.user = "u" + w.r.runID + "-" + strconv.Itoa(w.id) + "-" + strconv.FormatInt(w.seq, 10)
	}
	if sc.MultiShare > 0 && w.rng.Float64() < sc.MultiShare {
		rq.items = make([]flashorder.ItemRequest, 0, sc.MultiItems)
		for len(rq.items) < sc.MultiItems {
			sku := w.r.skus[w.sku()]
			dup := false
			for _, it := range rq.items {
				dup = dup || it.SKU == sku
			}
			if !dup {
				rq.items = append(rq.items, flashorder.ItemRequest{SKU: sku, Quantity: sc.Quantity})
			}
		}
	} else {
		rq.items = w.r.singleItems[w.sku()]
	}
	rq.key = w.r.runID + "-" + strconv.Itoa(w.id) + "-" + strconv.FormatInt(w.seq, 10)
	rq.body = appendOrderJSON(make([]byte, 0, 64+32*len(rq.items)), rq.user, rq.items)
	return rq
}

// appendOrderJSON encodes an order request. User ids and SKUs are restricted
// to characters that need no JSON escaping.
func appendOrderJSON(b []byte, user string, items []flashorder.ItemRequest) []byte {
	b = append(b, `{"user_id":"`...)
	b = append(b, user...)
	b = append(b, `","items":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sku":"`...)
		b = append(b, it.SKU...)
		b = append(b, `","quantity":`...)
		b = strconv.AppendInt(b, it.Quantity, 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// answerBody is the part of an order answer, or of an error, that the
// client checks.
type answerBody struct {
	ID     string                   `json:"id"`
	UserID string                   `json:"user_id"`
	Items  []flashorder.ItemRequest `json:"items"`
	Error  struct {
		Code string `json:"code"`
	} `json:"error"`
}

// send sends one request and records its answer; latency runs from intended.
func (w *worker) send(ctx context.Context, intended, sent time.Time, open bool) {
	rq := w.next()
	url := w.r.orderURLs[w.url]
	w.url = (w.url + 1) % len(w.r.orderURLs)

	status, ans, err := w.do(ctx, url, rq)
	done := time.Now()
	var a Answer
	switch {
	case err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil:
		a = Answer{Code: "cancelled"}
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)):
		a = Answer{Code: CodeTimeout}
	case err != nil:
		a = Answer{Code: CodeTransport}
	default:
		a = Answer{Status: status}
		if status != http.StatusCreated {
			a.Code = ans.Error.Code
		}
	}

	var units int64
	if a.Status == 0 || a.Status >= 500 {
		// The server may have made the order: the audit allows for it.
		w.state.uncertainRequests++
		for _, it := range rq.items {
			w.state.uncertain[it.SKU] += it.Quantity
		}
	}
	if a.Status == http.StatusCreated {
		replayed := ans.replayed
		w.check201(rq, ans)
		w.state.orders = append(w.state.orders, record{ID: ans.ID, Key: rq.key, User: rq.user, Items: rq.items, Replayed: replayed})
		if !replayed {
			for _, it := range rq.items {
				units += it.Quantity
				w.r.soldByClient[w.r.skuIndex(it.SKU)].Add(it.Quantity)
			}
		}
	}
	if rq.retry && w.lastStatus == http.StatusCreated && a.Status != 0 && a.Status < 500 &&
		(a.Status != http.StatusCreated || ans.ID != w.lastID) {
		w.violate("idempotency: key %s first answered 201 order %s, its retry got %d %s order %q",
			rq.key, w.lastID, a.Status, a.Code, ans.ID)
	}
	if !rq.retry || w.lastStatus == 0 || w.lastStatus >= 500 {
		w.last, w.lastStatus, w.lastID = rq, a.Status, ans.ID
	}
	w.shard.record(done.Sub(intended), a, units, intended, sent, open)
}

// check201 compares a 201's body with the request.
func (w *worker) check201(rq *request, ans *answer) {
	if ans.ID == "" {
		w.violate("answer: 201 without an order id for key %s", rq.key)
		return
	}
	if ans.UserID != rq.user || !sameItems(ans.Items, rq.items) {
		w.violate("answer: 201 order %s is for user %s items %v, the request was user %s items %v",
			ans.ID, ans.UserID, ans.Items, rq.user, rq.items)
	}
}

// maxViolationsPerWorker bounds the memory a broken server can make us use.
const maxViolationsPerWorker = 100

func (w *worker) violate(format string, args ...any) {
	if len(w.state.violations) < maxViolationsPerWorker {
		w.state.violations = append(w.state.violations, fmt.Sprintf(format, args...))
	}
}

// answer is a decoded answer.
type answer struct {
	answerBody
	replayed bool
}

var emptyAnswer = &answer{}

// do sends rq to url and decodes the answer.
func (w *worker) do(ctx context.Context, url string, rq *request) (int, *answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(rq.body))
	if err != nil {
		return 0, emptyAnswer, err
	}
	req.Header = http.Header{"Content-Type": jsonContentType, orderhttp.IdempotencyKeyHeader: []string{rq.key}}
	resp, err := w.r.client.Do(req)
	if err != nil {
		return 0, emptyAnswer, err
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, emptyAnswer, err
	}
	ans := &answer{replayed: resp.Header.Get(orderhttp.ReplayedHeader) == "true"}
	if err := json.Unmarshal(w.buf.Bytes(), &ans.answerBody); err != nil && resp.StatusCode == http.StatusCreated {
		ans.ID = ""
	}
	return resp.StatusCode, ans, nil
}

// skuIndex returns the index of a SKU of the scenario.
func (r *runner) skuIndex(sku string) int {
	if len(r.skus) == 1 {
		return 0
	}
	n, err := strconv.Atoi(sku[len(r.cfg.Scenario.SKUPrefix):])
	if err != nil || n < 0 || n >= len(r.skus) {
		return 0
	}
	return n
}
