package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/jwtauth"
	"github.com/flashorder/flashorder/queue"
)

// benchStore is a Store that only answers Ping: the order path under
// benchmark never reaches the database.
type benchStore struct{ flashorder.Store }

func (benchStore) Ping(context.Context) error { return nil }

// instantPlacer answers every order at once, as a strategy would that took
// no time: what is left is the HTTP layer's own cost. With soldOut set it
// refuses every order.
type instantPlacer struct {
	created time.Time
	soldOut bool
}

var errSoldOut = flashorder.Errorf(flashorder.ESOLDOUT, "hot-1 is sold out")

func (p instantPlacer) PlaceOrder(_ context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	if p.soldOut {
		return nil, errSoldOut
	}
	items := make([]flashorder.OrderItem, len(req.Items))
	var total int64
	for i, it := range req.Items {
		items[i] = flashorder.OrderItem{SKU: it.SKU, Quantity: it.Quantity, PriceCents: 199900}
		total += it.Quantity * 199900
	}
	return &flashorder.Order{ID: "01J8ZQ4V6Y3K2M5N7P9R1T3W5X", UserID: req.UserID, Status: flashorder.StatusCreated,
		Items: items, TotalCents: total, CreatedAt: p.created}, nil
}

// benchWriter is a ResponseWriter that keeps the status and drops the body,
// reused across iterations so that the benchmark measures the handler, not
// the recorder.
type benchWriter struct {
	header http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) reset() {
	clear(w.header)
	w.status, w.n = 0, 0
}

var benchBody = []byte(`{"user_id":"u-42","items":[{"sku":"hot-1","quantity":1}]}`)

// benchRequest returns a POST /api/v1/orders as net/http hands it to the
// handler. The header map is shared by every iteration: handlers only read
// it, except the Idempotency-Key that set changes.
func benchRequest(path string, body []byte, header http.Header) *http.Request {
	return &http.Request{
		Method: http.MethodPost, URL: &url.URL{Path: path}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Host: "orderd", RemoteAddr: "127.0.0.1:40000", RequestURI: path,
	}
}

// serve runs b.N requests built by next through h, expecting status want.
func serve(b *testing.B, h http.Handler, want int, next func(i int) *http.Request) {
	b.Helper()
	w := &benchWriter{header: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.reset()
		h.ServeHTTP(w, next(i))
		if w.status != want {
			b.Fatalf("status %d, want %d", w.status, want)
		}
	}
}

func benchServer(b *testing.B, soldOut bool) http.Handler {
	b.Helper()
	return benchServerAuth(b, soldOut, nil)
}

// benchSecret is the HS256 key of the jwt benchmarks.
var benchSecret = []byte("bench-jwt-secret-bench-jwt-secret")

// benchServerAuth is benchServer with auth, when auth is set.
func benchServerAuth(b *testing.B, soldOut bool, auth flashorder.Authenticator) http.Handler {
	b.Helper()
	idem := inmem.NewIdempotencyStore()
	idem.Retention = time.Second // keeps the store small over millions of keys
	placer := instantPlacer{created: time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC), soldOut: soldOut}
	// As orderd runs it.
	s := newServer(orderhttp.Config{Store: benchStore{}, MaxInflight: orderhttp.DefaultMaxInflight,
		OrderTimeout: orderhttp.DefaultOrderTimeout, Authenticator: auth}, placer, idem)
	return s.Handler()
}

// BenchmarkCreateOrder drives POST /api/v1/orders through the real handler
// chain with a placer that answers at once: the HTTP layer's cost per order.
func BenchmarkCreateOrder(b *testing.B) {
	b.Run("no-key", func(b *testing.B) {
		h := benchServer(b, false)
		header := http.Header{"Content-Type": {"application/json"}}
		serve(b, h, http.StatusCreated, func(int) *http.Request {
			return benchRequest("/api/v1/orders", benchBody, header)
		})
	})
	b.Run("key", func(b *testing.B) {
		h := benchServer(b, false)
		header := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {""}}
		keys := header["Idempotency-Key"]
		var buf []byte
		serve(b, h, http.StatusCreated, func(i int) *http.Request {
			buf = strconv.AppendInt(append(buf[:0], "bench-key-"...), int64(i), 10)
			keys[0] = string(buf)
			return benchRequest("/api/v1/orders", benchBody, header)
		})
	})
	b.Run("jwt", func(b *testing.B) {
		// auth jwt: an HS256 user token per request, as orderbench sends
		// it; the body names the token's user.
		v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: benchSecret})
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
		token, err := jwtauth.Mint(benchSecret, "u-42", "", "", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		h := benchServerAuth(b, false, v)
		header := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + token}}
		serve(b, h, http.StatusCreated, func(int) *http.Request {
			return benchRequest("/api/v1/orders", benchBody, header)
		})
	})
	b.Run("sold-out", func(b *testing.B) {
		h := benchServer(b, true)
		header := http.Header{"Content-Type": {"application/json"}}
		serve(b, h, http.StatusConflict, func(int) *http.Request {
			return benchRequest("/api/v1/orders", benchBody, header)
		})
	})
	b.Run("replay", func(b *testing.B) {
		h := benchServer(b, false)
		header := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"bench-replay"}}
		serve(b, h, http.StatusCreated, func(int) *http.Request {
			return benchRequest("/api/v1/orders", benchBody, header)
		})
	})
}

// gateStore is a Store with one sold-out product, bench-gone (per-user limit
// 1, held by u-42), and one whose sale has not started, bench-early: what a
// checkout.Gate reads to learn them.
type gateStore struct{ benchStore }

func (gateStore) Product(_ context.Context, sku string) (*flashorder.Product, error) {
	switch sku {
	case "bench-gone":
		return &flashorder.Product{SKU: sku, Name: "Gone", PriceCents: 100, PerUserLimit: 1, Restocked: 10, Sold: 10}, nil
	case "bench-early":
		start := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		return &flashorder.Product{SKU: sku, Name: "Early", PriceCents: 100, Stock: 10, Restocked: 10, StartsAt: &start}, nil
	}
	return nil, flashorder.Errorf(flashorder.ENOTFOUND, "no product %q", sku)
}

func (gateStore) QuotaHolders(context.Context, string, int) (map[string]int64, error) {
	return map[string]int64{"u-42": 1}, nil
}

// BenchmarkGateRefusal drives the refusals of a drop's crowd through the
// real handler chain and a real checkout.Gate: what orderd does per request
// after the sell-out and before the start, without the network.
func BenchmarkGateRefusal(b *testing.B) {
	for _, bc := range []struct {
		name, body string
		code       string
	}{
		{"sold-out", `{"user_id":"u-7","items":[{"sku":"bench-gone","quantity":1}]}`, flashorder.ESOLDOUT},
		{"limit", `{"user_id":"u-42","items":[{"sku":"bench-gone","quantity":1}]}`, flashorder.ELIMITEXCEEDED},
		{"not-started", `{"user_id":"u-7","items":[{"sku":"bench-early","quantity":1}]}`, flashorder.ENOTSTARTED},
	} {
		b.Run(bc.name, func(b *testing.B) {
			gate := checkout.NewGate(instantPlacer{soldOut: true}, gateStore{})
			gate.TTL = time.Hour // no renewal during the run
			s := newServer(orderhttp.Config{Store: gateStore{}, MaxInflight: orderhttp.DefaultMaxInflight,
				OrderTimeout: orderhttp.DefaultOrderTimeout}, gate, nil)
			h := s.Handler()
			body := []byte(bc.body)
			header := http.Header{"Content-Type": {"application/json"}}
			// Orders teach the gate (sold out) or fill its product cache
			// (not started) until the gate answers one itself.
			deadline := time.Now().Add(5 * time.Second)
			for window, sold := gate.Hits(); window+sold == 0; window, sold = gate.Hits() {
				if time.Now().After(deadline) {
					b.Fatal("the gate answered no order in 5s")
				}
				benchLast(b, h, body, header)
				time.Sleep(time.Millisecond)
			}
			if !bytes.Contains(benchLast(b, h, body, header), []byte(`"`+bc.code+`"`)) {
				b.Fatalf("the gate does not answer %s", bc.code)
			}
			serve(b, h, http.StatusConflict, func(int) *http.Request {
				return benchRequest("/api/v1/orders", body, header)
			})
		})
	}
}

// benchLast serves one request and returns its body.
func benchLast(b *testing.B, h http.Handler, body []byte, header http.Header) []byte {
	b.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, benchRequest("/api/v1/orders", body, header))
	return rec.Body.Bytes()
}

// BenchmarkNoop is a bare Gin engine with one handler that answers 201 with
// a fixed body: the floor that BenchmarkCreateOrder is compared with.
func BenchmarkNoop(b *testing.B) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	answer := []byte(`{"id":"01J8ZQ4V6Y3K2M5N7P9R1T3W5X"}`)
	r.POST("/api/v1/orders", func(c *gin.Context) { c.Data(http.StatusCreated, "application/json; charset=utf-8", answer) })
	header := http.Header{"Content-Type": {"application/json"}}
	serve(b, r, http.StatusCreated, func(int) *http.Request {
		return benchRequest("/api/v1/orders", benchBody, header)
	})
}

// queueStore is a Store with one product sold through a waiting room whose
// sale starts in an hour, bench-queue: joins go to its pre-queue.
type queueStore struct{ benchStore }

var queueStart = time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)

func (queueStore) Product(_ context.Context, sku string) (*flashorder.Product, error) {
	if sku == "bench-queue" {
		return &flashorder.Product{SKU: sku, Name: "Queue", PriceCents: 100, Stock: 10, Restocked: 10,
			StartsAt: &queueStart, Admission: flashorder.AdmissionQueue}, nil
	}
	return nil, flashorder.Errorf(flashorder.ENOTFOUND, "no product %q", sku)
}

func (queueStore) SaleProducts(context.Context, string) ([]*flashorder.Product, error) {
	return nil, nil
}

// BenchmarkQueue drives the waiting room's join (a new user each) and poll
// (one of 10,000 waiting tickets) through the real handler chain and a
// queue.Room on the in-process store: the HTTP layer's and the room's cost,
// without the network or Redis.
func BenchmarkQueue(b *testing.B) {
	signer, err := queue.NewSigner(benchSecret)
	if err != nil {
		b.Fatal(err)
	}
	room := queue.NewRoom(inmem.NewQueueStore(queue.Options{IdleTimeout: time.Hour}), signer, queueStore{}, queueStore{}, queue.RoomOptions{})
	s := newServer(orderhttp.Config{Store: queueStore{}, Room: room}, instantPlacer{}, nil)
	h := s.Handler()
	header := http.Header{"Content-Type": {"application/json"}}
	tickets := make([]string, 10000)
	for i := range tickets {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, benchRequest("/api/v1/products/bench-queue/queue", fmt.Appendf(nil, `{"user_id":"w-%d"}`, i), header))
		var p struct{ Ticket string }
		if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &p) != nil {
			b.Fatalf("join: %d %s", rec.Code, rec.Body)
		}
		tickets[i] = p.Ticket
	}
	b.Run("join", func(b *testing.B) {
		serve(b, h, http.StatusAccepted, func(i int) *http.Request {
			return benchRequest("/api/v1/products/bench-queue/queue", fmt.Appendf(nil, `{"user_id":"j-%d"}`, i), header)
		})
	})
	b.Run("poll", func(b *testing.B) {
		serve(b, h, http.StatusOK, func(i int) *http.Request {
			r := benchRequest("/api/v1/queue/"+tickets[i%len(tickets)], nil, http.Header{})
			r.Method, r.Body, r.ContentLength = http.MethodGet, http.NoBody, 0
			return r
		})
	})
}
