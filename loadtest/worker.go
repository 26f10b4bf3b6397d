package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

// jsonContentType and userAgent are shared by every request: net/http only
// reads headers.
var (
	jsonContentType = []string{"application/json"}
	userAgent       = []string{"orderbench"}
)

// Transport error codes, used as Answer.Code with Status 0.
const (
	CodeTimeout   = "timeout"
	CodeTransport = "transport_error"
	// CodeRefused is a request that never reached a server: the connection
	// could not be made (nothing listens, or the server stopped accepting).
	// Like other transport errors its outcome still counts as unknown: a
	// request resent after a stale keep-alive connection may have reached
	// the server on its first try.
	CodeRefused = "connection_refused"
)

// worker is one client. All of its state is its own; it touches shared state
// only through its stats shard and atomics.
type worker struct {
	r       *runner
	id      int
	rng     *rand.Rand
	zipf    *rand.Zipf
	shard   *shard
	seq     int64
	url     int
	buf     bytes.Buffer
	state   workerState
	scratch answerBody
	// raw is the hot-loop HTTP client for plain http targets; nil means
	// net/http through runner.client.
	raw *rawClient

	etag []byte // scratch for net/http's ETag
	body []byte // scratch for a drop's order bodies

	last       *request // the previous request, for retries
	lastStatus int
	lastID     string
}

// request is one order request with its pre-encoded body.
type request struct {
	user  string
	auth  string // Authorization header value, "" without JWTSecret
	items []flashorder.ItemRequest
	key   string
	body  []byte
	// retry marks a resend of an answered request (RetryShare); resend one
	// of a request whose outcome is unknown (a drop's retry after an error).
	retry  bool
	resend bool
	// admission is the Admission-Token header ("" for none) and ticket the
	// ticket it admits; xff the X-Forwarded-For header (a drop's buyer's
	// address).
	admission string
	ticket    string
	xff       string
}

func newWorker(r *runner, id int) *worker {
	w := &worker{
		r:     r,
		id:    id,
		rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id))),
		shard: r.shards[id%len(r.shards)],
		url:   id % len(r.cfg.URLs),
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
		if w.r.idle(w.id, now) {
			// Not yet (or no longer) part of the ramp: look again shortly.
			if !sleep(ctx, 10*time.Millisecond) {
				return
			}
			continue
		}
		if w.r.cfg.Requests > 0 && !now.Before(w.r.measureStart) && w.r.claimed.Add(1) > w.r.cfg.Requests {
			return
		}
		w.send(ctx, now, now, false)
		if think > 0 && !sleep(ctx, think) {
			return
		}
	}
}

// sleep waits for d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
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
		i := w.rng.IntN(len(w.r.users))
		rq.user = w.r.users[i]
		if len(w.r.auths) > 0 {
			rq.auth = w.r.auths[i]
		}
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
	if !sc.NoKeys {
		rq.key = w.r.runID + "-" + strconv.Itoa(w.id) + "-" + strconv.FormatInt(w.seq, 10)
	}
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
	ID        string                   `json:"id"`
	UserID    string                   `json:"user_id"`
	Items     []flashorder.ItemRequest `json:"items"`
	CreatedAt time.Time                `json:"created_at"`
	Error     struct {
		Code string `json:"code"`
	} `json:"error"`
}

// send sends one request and records its answer; latency runs from intended.
func (w *worker) send(ctx context.Context, intended, sent time.Time, open bool) {
	rq := w.next()
	a, ans := w.order(ctx, w.target(), rq, intended, sent, open)
	if rq.retry && w.lastStatus == http.StatusCreated && a.Status != 0 && a.Status < 500 &&
		(a.Status != http.StatusCreated || ans.ID != w.lastID) {
		w.violate("idempotency: key %s first answered 201 order %s, its retry got %d %s order %q",
			rq.key, w.lastID, a.Status, a.Code, ans.ID)
	}
	if !rq.retry || w.lastStatus == 0 || w.lastStatus >= 500 {
		w.last, w.lastStatus, w.lastID = rq, a.Status, ans.ID
	}
}

// target returns the index in Config.URLs of the server the worker's next
// request goes to, and moves on to the next server unless Config.Sticky.
func (w *worker) target() int {
	t := w.url
	if !w.r.cfg.Sticky {
		w.url = (w.url + 1) % len(w.r.cfg.URLs)
	}
	return t
}

// order sends rq to target, checks and keeps a 201 for the audit, and
// records the answer; latency runs from intended.
func (w *worker) order(ctx context.Context, target int, rq *request, intended, sent time.Time, open bool) (Answer, *answer) {
	status, ans, resent, err := w.do(ctx, target, rq)
	done := time.Now()
	a := classifyAnswer(ctx, status, ans.Error.Code, err)

	var units int64
	if a.Status == 0 || a.Status >= 500 {
		// The server may have made the order: the audit allows for it.
		w.uncertain(rq)
	}
	if resent && rq.key == "" {
		// Without a key, a first attempt that reached the server made an
		// order of its own, which the second cannot replay.
		w.uncertain(rq)
	}
	if a.Status == http.StatusCreated && !w.r.cfg.NoServer {
		// A request resent on a fresh connection, or after an unknown
		// outcome, may replay its own first attempt: that order is still
		// new to this client.
		replayed := ans.replayed && !((resent || rq.resend) && !rq.retry)
		w.check201(rq, ans)
		w.state.orders = append(w.state.orders, record{ID: ans.ID, Key: rq.key, User: rq.user, Items: rq.items,
			Replayed: replayed, CreatedAt: ans.CreatedAt, Ticket: rq.ticket})
		if !replayed {
			for _, it := range rq.items {
				units += it.Quantity
				w.r.took(w.r.skuIndex(it.SKU), it.Quantity, done)
			}
		}
	}
	w.shard.record(done.Sub(intended), done.Sub(sent), a, units, intended, sent, open, !sent.Before(w.r.measureStart))
	if f := w.r.cfg.OnAnswer; f != nil {
		f(AnswerEvent{Target: target, Key: rq.key, Answer: a, Intended: intended, Sent: sent, Done: done, Order: ans.ID, Replayed: ans.replayed})
	}
	return a, ans
}

// classifyAnswer turns a request's outcome into an Answer: its status and
// error code, or the kind of transport failure.
func classifyAnswer(ctx context.Context, status int, code string, err error) Answer {
	switch {
	case err != nil && ctx.Err() != nil:
		return Answer{Code: CodeCancelled}
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err)):
		return Answer{Code: CodeTimeout}
	case err != nil && isDialError(err):
		return Answer{Code: CodeRefused}
	case err != nil:
		return Answer{Code: CodeTransport}
	case status == http.StatusCreated:
		return Answer{Status: status}
	default:
		return Answer{Status: status, Code: code}
	}
}

// uncertain counts rq as a request whose outcome is unknown: the audit
// allows for the order it may have made.
func (w *worker) uncertain(rq *request) {
	w.state.uncertainRequests++
	for _, it := range rq.items {
		w.state.uncertain[it.SKU] += it.Quantity
	}
}

// AnswerEvent is one answer of a run, as Config.OnAnswer sees it.
type AnswerEvent struct {
	// Target is the index in Config.URLs of the server the request went to.
	Target int
	// Key is the request's Idempotency-Key.
	Key string
	// Answer is the status and error code (Status 0: no answer).
	Answer Answer
	// Intended is when the request was due (open loop), Sent when it left,
	// Done when its answer (or error) arrived.
	Intended, Sent, Done time.Time
	// Order is the order id of a 201, and Replayed whether it was a replay.
	Order    string
	Replayed bool
}

// isDialError reports whether err is a failure to connect, so that the
// request was never sent.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
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
	// retryAfter is the Retry-After header in seconds; 0 when absent.
	retryAfter int
}

var emptyAnswer = &answer{}

// do sends rq to target and decodes the answer. resent reports that the raw
// client sent it twice (see rawClient.post).
func (w *worker) do(ctx context.Context, target int, rq *request) (status int, ans *answer, resent bool, err error) {
	ra, resent, err := w.roundTrip(ctx, target, &message{method: http.MethodPost, path: ordersPath, key: rq.key, auth: rq.auth, body: rq.body,
		admission: rq.admission, xff: rq.xff})
	if err != nil {
		return 0, emptyAnswer, resent, err
	}
	ans = &answer{replayed: ra.replayed, retryAfter: ra.retryAfter}
	body := w.buf.Bytes()
	switch {
	case ra.status != http.StatusCreated:
		if ans.Error.Code = errorCode(body); ans.Error.Code == "" {
			_ = json.Unmarshal(body, &ans.answerBody)
		}
	case w.r.cfg.NoServer:
		// The no-op ceiling: decode like a real run, keep nothing.
		_ = json.Unmarshal(body, &w.scratch)
	default:
		if err := json.Unmarshal(body, &ans.answerBody); err != nil {
			ans.ID = ""
		}
	}
	return ra.status, ans, resent, nil
}

// roundTrip sends m to target, with the raw client when the worker has one
// and net/http otherwise, and reads the answer's body into w.buf.
func (w *worker) roundTrip(ctx context.Context, target int, m *message) (a rawAnswer, resent bool, err error) {
	if w.raw != nil {
		return w.raw.send(ctx, target, m, &w.buf)
	}
	var body io.Reader
	if m.body != nil {
		body = bytes.NewReader(m.body)
	}
	req, err := http.NewRequestWithContext(ctx, m.method, w.r.cfg.URLs[target]+m.path, body)
	if err != nil {
		return a, false, err
	}
	req.Header = http.Header{"User-Agent": userAgent}
	if m.body != nil {
		req.Header["Content-Type"] = jsonContentType
	}
	if m.key != "" {
		req.Header[orderhttp.IdempotencyKeyHeader] = []string{m.key}
	}
	if m.auth != "" {
		req.Header["Authorization"] = []string{m.auth}
	}
	if m.etag != "" {
		req.Header["If-None-Match"] = []string{m.etag}
	}
	if m.admission != "" {
		req.Header[orderhttp.AdmissionTokenHeader] = []string{m.admission}
	}
	if m.xff != "" {
		req.Header["X-Forwarded-For"] = []string{m.xff}
	}
	resp, err := w.r.client.Do(req)
	if err != nil {
		return a, false, err
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return a, false, err
	}
	a.status, a.replayed = resp.StatusCode, resp.Header.Get(orderhttp.ReplayedHeader) == "true"
	a.retryAfter, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
	if e := resp.Header.Get("Etag"); e != "" {
		w.etag = append(w.etag[:0], e...)
		a.etag = w.etag
	}
	return a, false, nil
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

// errorCode extracts the code from an error body
// {"error":{"code":"sold_out",...}} without a full JSON decode; the API's
// codes are plain ASCII words. It returns "" when there is none.
func errorCode(body []byte) string {
	const key = `"code":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return ""
	}
	return string(rest[:j])
}
